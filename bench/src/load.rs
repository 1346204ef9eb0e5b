//! `portico-bench load`: an open-loop HTTP/1.1 load generator that sends each request at its
//! own scheduled time, for the latency half of `bench/regimes`.
//!
//! Why not oha: oha paces its sends on tokio's 1 ms timer wheel, so at 20–40k requests/s they
//! leave in bursts of 20–40 every millisecond, and it times each from the tick that released it;
//! on a 2-core machine that instrument alone (oha straight to the backend) made a good part of
//! every proxy's p99. This generator is one thread and one epoll loop: request `i` is due at
//! `start + i / rate`, the loop sleeps until the next due time with `epoll_pwait2`'s
//! nanosecond timeout (timer slack lowered to 1 µs), and each request's latency is measured
//! from the time it was *due*, not the time it left, so a request held back by a busy
//! connection or a late wake-up still counts its wait (no coordinated omission, as wrk2).
//! The loop also reports how late its own sends were (the instrument's floor, read in the same
//! run) and each request's service time from its send to its answer (the server's part alone).
//!
//! The price of that precision is a wake-up per request: at 20k requests/s it used 0.59 core
//! where oha used 0.33 (bench/README). One request in flight per connection (HTTP/1.1
//! keep-alive, no pipelining); a due request with no idle connection waits for the first one
//! to free up. Linux only (epoll).

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    num::NonZeroU64,
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use rustix::{
    buffer::spare_capacity,
    event::{Timespec, epoll},
};

/// What `portico-bench load` is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `http://host:port/path`.
    pub url: String,
    /// Requests per second, spread evenly (one every `1 / rate` s).
    pub rate: u64,
    /// Keep-alive connections, each with at most one request in flight.
    pub connections: usize,
    /// How long requests are sent for; answers still due get [`GRACE`] more.
    pub duration: Duration,
}

/// How long answers to the last requests are waited for after the sending window closes.
const GRACE: Duration = Duration::from_secs(5);

/// The run's outcome, printed as JSON by the caller.
#[derive(Debug)]
pub struct Report {
    /// Requests scheduled (`rate × duration`).
    pub scheduled: u64,
    /// Complete answers, by status code.
    pub status: BTreeMap<u16, u64>,
    /// Requests that got no complete answer: the connection failed or the grace ran out.
    pub errors: u64,
    /// Due time → complete answer, every answered request, sorted (ns).
    pub latency_ns: Vec<u64>,
    /// Due time → first byte written, every sent request, sorted (ns): the generator's lateness.
    pub lateness_ns: Vec<u64>,
    /// First byte written → complete answer, every answered request, sorted (ns): what the
    /// server (and the kernel between) took, without the generator's own lateness.
    pub service_ns: Vec<u64>,
    /// Requests that found every connection busy when due and waited for one to free up:
    /// something (the server, or the whole machine) stalled for longer than `connections`
    /// requests' spacing.
    pub held: u64,
    /// Wall time from the first due request to the last answer.
    pub elapsed: Duration,
}

impl Report {
    /// The `q` quantile (0..=1) of sorted `values`, in milliseconds; 0 when empty.
    pub fn quantile_ms(values: &[u64], q: f64) -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        // Nearest rank: the smallest value with at least q of the sample at or below it.
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1] as f64 / 1e6
    }

    /// The report as one JSON object (what `bench/regimes` reads).
    pub fn to_json(&self) -> serde_json::Value {
        let pct = |values: &[u64]| {
            serde_json::json!({
                "p50": Self::quantile_ms(values, 0.50),
                "p90": Self::quantile_ms(values, 0.90),
                "p99": Self::quantile_ms(values, 0.99),
                "p999": Self::quantile_ms(values, 0.999),
                "max": Self::quantile_ms(values, 1.0),
            })
        };
        let status: serde_json::Map<String, serde_json::Value> =
            self.status.iter().map(|(code, n)| (code.to_string(), (*n).into())).collect();
        serde_json::json!({
            "scheduled": self.scheduled,
            "answered": self.latency_ns.len(),
            "errors": self.errors,
            "held_for_a_connection": self.held,
            "status": status,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "latency_ms": pct(&self.latency_ns),
            "send_lateness_ms": pct(&self.lateness_ns),
            "service_ms": pct(&self.service_ns),
        })
    }
}

/// One keep-alive connection and the request it has in flight.
struct Conn {
    stream: TcpStream,
    /// Bytes of the answer read so far.
    buf: Vec<u8>,
    /// The due time and the send time of the request in flight, if any.
    due: Option<(Instant, Instant)>,
    /// Bytes of the request not yet written (a full send buffer; rare with one in flight).
    unsent: usize,
}

/// Run `plan` to the end and report. Fails on setup (a bad URL, nothing listening) or when a
/// lost connection cannot be reopened; a request whose connection fails mid-run is counted in
/// [`Report::errors`] and its connection reopened.
pub fn run(plan: &Plan) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let (addr, host, path) = parse_url(&plan.url)?;
    if plan.rate == 0 || plan.connections == 0 {
        return Err("load: --rate and --connections must be at least 1".into());
    }
    // The default 50 µs slack would let every timed wake-up drift by up to 50 µs.
    rustix::thread::set_current_timer_slack(NonZeroU64::new(1_000))?;
    let scheduled = (u128::from(plan.rate) * plan.duration.as_nanos() / 1_000_000_000) as u64;
    // Room for every sample up front (no reallocation mid-run), within reason: 16 Mi each.
    let room = scheduled.min(1 << 24) as usize;
    let mut load = Load {
        poll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        addr,
        request: format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n\r\n"
        )
        .into_bytes(),
        conns: Vec::with_capacity(plan.connections),
        idle: (0..plan.connections).rev().collect(),
        in_flight: 0,
        report: Report {
            scheduled,
            status: BTreeMap::new(),
            errors: 0,
            held: 0,
            latency_ns: Vec::with_capacity(room),
            lateness_ns: Vec::with_capacity(room),
            service_ns: Vec::with_capacity(room),
            elapsed: Duration::ZERO,
        },
    };
    for index in 0..plan.connections {
        let conn = load.warm_connection(index)?;
        load.conns.push(conn);
    }

    let start = Instant::now();
    let due_at = |i: u64| {
        start + Duration::from_nanos((u128::from(i) * 1_000_000_000 / u128::from(plan.rate)) as u64)
    };
    let deadline = start + plan.duration + GRACE;
    let mut next = 0_u64;
    let mut events: Vec<epoll::Event> = Vec::with_capacity(plan.connections.min(1024));
    let mut chunk = vec![0_u8; 64 * 1024];
    let mut last_answer = start;
    // Whether a due request found no idle connection and the backlog is not yet sent.
    let mut exhausted = false;
    loop {
        let now = Instant::now();
        while next < scheduled && due_at(next) <= now {
            let Some(index) = load.idle.pop() else {
                // Every connection is busy: what is due now waits for an answer to free one.
                exhausted = true;
                break;
            };
            load.report.held += u64::from(exhausted);
            load.send(index, due_at(next), now)?;
            next += 1;
        }
        if next == scheduled || due_at(next) > now {
            exhausted = false;
        }
        if next == scheduled && load.in_flight == 0 {
            break;
        }
        if now >= deadline {
            // The grace ran out: whatever is in flight or unsent never got its answer.
            load.report.errors += load.in_flight as u64 + (scheduled - next);
            break;
        }
        let wake = if next < scheduled && !load.idle.is_empty() {
            due_at(next).min(deadline)
        } else {
            deadline
        };
        let timeout = Timespec::try_from(wake.saturating_duration_since(now))?;
        events.clear();
        match epoll::wait(&load.poll, spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        let now = Instant::now();
        for event in &events {
            if load.on_ready(event.data.u64() as usize, now, &mut chunk)? {
                last_answer = now;
            }
        }
    }
    let mut report = load.report;
    report.elapsed = last_answer.duration_since(start);
    report.latency_ns.sort_unstable();
    report.lateness_ns.sort_unstable();
    report.service_ns.sort_unstable();
    Ok(report)
}

/// The loop's state: the connections, which of them are idle, and the tally.
struct Load {
    poll: OwnedFd,
    addr: SocketAddr,
    request: Vec<u8>,
    conns: Vec<Conn>,
    /// Connections with no request in flight (a stack: the most recently used goes first).
    idle: Vec<usize>,
    in_flight: usize,
    report: Report,
}

impl Load {
    /// Open connection `index` and have one request answered on it before the clock starts,
    /// so the server's upstream connections and buffers exist when the measured load begins.
    fn warm_connection(
        &self,
        index: usize,
    ) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = connect(self.addr)?;
        // A server that accepts and never answers fails the run instead of hanging it.
        conn.stream.set_read_timeout(Some(GRACE))?;
        conn.stream.write_all(&self.request)?;
        let mut chunk = [0_u8; 16 * 1024];
        loop {
            let n = conn.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(format!("load: {} closed the warm-up connection", self.addr).into());
            }
            conn.buf.extend_from_slice(&chunk[..n]);
            if let Some(answer) = parse_answer(&conn.buf)? {
                conn.buf.drain(..answer.len);
                break;
            }
        }
        self.register(&conn, index)?;
        Ok(conn)
    }

    fn register(&self, conn: &Conn, index: usize) -> io::Result<()> {
        conn.stream.set_nonblocking(true)?;
        epoll::add(
            &self.poll,
            &conn.stream,
            epoll::EventData::new_u64(index as u64),
            epoll::EventFlags::IN,
        )?;
        Ok(())
    }

    /// Send the request due at `due` on idle connection `index`.
    fn send(&mut self, index: usize, due: Instant, now: Instant) -> io::Result<()> {
        self.report.lateness_ns.push(now.duration_since(due).as_nanos() as u64);
        self.in_flight += 1;
        let conn = &mut self.conns[index];
        conn.due = Some((due, now));
        conn.unsent = self.request.len();
        if let Err(error) = write_rest(&self.poll, conn, index, &self.request) {
            self.fail(index, &error)?;
        }
        Ok(())
    }

    /// Connection `index` is readable (or writable again): finish its write, read what has
    /// arrived, and count a whole answer. True when an answer was counted.
    fn on_ready(&mut self, index: usize, now: Instant, chunk: &mut [u8]) -> io::Result<bool> {
        match receive(&self.poll, &mut self.conns[index], index, &self.request, chunk) {
            Ok(None) => Ok(false),
            Ok(Some(answer)) => {
                let Some((due, sent)) = self.conns[index].due.take() else {
                    self.fail(
                        index,
                        &io::Error::new(io::ErrorKind::InvalidData, "an answer nobody asked for"),
                    )?;
                    return Ok(false);
                };
                self.report.latency_ns.push(now.duration_since(due).as_nanos() as u64);
                self.report.service_ns.push(now.duration_since(sent).as_nanos() as u64);
                *self.report.status.entry(answer.status).or_default() += 1;
                self.in_flight -= 1;
                if answer.close {
                    // The server closes after this answer: reopen now rather than send the next
                    // request into a socket it is closing (and charge that request an error).
                    self.reopen(index)?;
                }
                self.idle.push(index);
                Ok(true)
            }
            Err(error) => {
                self.fail(index, &error)?;
                Ok(false)
            }
        }
    }

    /// Connection `index` failed: its request in flight (if any) is an error; replace it.
    fn fail(&mut self, index: usize, error: &io::Error) -> io::Result<()> {
        if self.conns[index].due.take().is_some() {
            self.report.errors += 1;
            self.in_flight -= 1;
        }
        eprintln!("portico-bench load: connection {index}: {error}; reconnecting");
        self.reopen(index)?;
        self.idle.push(index);
        Ok(())
    }

    fn reopen(&mut self, index: usize) -> io::Result<()> {
        let _ = epoll::delete(&self.poll, &self.conns[index].stream);
        let fresh = connect(self.addr)?;
        self.register(&fresh, index)?;
        self.conns[index] = fresh;
        Ok(())
    }
}

fn connect(addr: SocketAddr) -> io::Result<Conn> {
    let stream = TcpStream::connect(addr).map_err(|error| {
        io::Error::new(error.kind(), format!("cannot connect to {addr}: {error}"))
    })?;
    stream.set_nodelay(true)?;
    Ok(Conn { stream, buf: Vec::with_capacity(4096), due: None, unsent: 0 })
}

/// Write what is left of the request; ask for writability if the send buffer is full.
fn write_rest(poll: &impl AsFd, conn: &mut Conn, index: usize, request: &[u8]) -> io::Result<()> {
    while conn.unsent > 0 {
        match conn.stream.write(&request[request.len() - conn.unsent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.unsent -= n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT;
                epoll::modify(poll, &conn.stream, epoll::EventData::new_u64(index as u64), flags)?;
                return Ok(());
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Finish a pending write and read what has arrived; the answer once it is whole.
fn receive(
    poll: &impl AsFd,
    conn: &mut Conn,
    index: usize,
    request: &[u8],
    chunk: &mut [u8],
) -> io::Result<Option<Answer>> {
    if conn.unsent > 0 {
        write_rest(poll, conn, index, request)?;
        if conn.unsent == 0 {
            epoll::modify(
                poll,
                &conn.stream,
                epoll::EventData::new_u64(index as u64),
                epoll::EventFlags::IN,
            )?;
        }
    }
    // One read per readiness event: the interest is level-triggered, so bytes left behind
    // are reported again by the next wait, and reading on to EAGAIN would cost every answer a
    // second system call (a third of the generator's own).
    match conn.stream.read(chunk) {
        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
        Err(error)
            if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    }
    let Some(answer) = parse_answer(&conn.buf)? else { return Ok(None) };
    conn.buf.drain(..answer.len);
    Ok(Some(answer))
}

/// A complete answer at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// Bytes of head and body.
    len: usize,
    /// The server said `Connection: close`.
    close: bool,
}

/// The longest answer head read before the answer counts as malformed: a server that never
/// ends its head must not grow the buffer for the rest of the run.
const MAX_HEAD: usize = 64 * 1024;

/// Parse one HTTP/1.1 answer from the front of `buf`: `None` while it is incomplete.
fn parse_answer(buf: &[u8]) -> io::Result<Option<Answer>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(invalid("an answer head over 64 KiB"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(&format!("malformed answer: {error}"))),
    };
    let status = response.code.ok_or_else(|| invalid("answer without a status"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text =
                std::str::from_utf8(header.value).map_err(|_| invalid("bad content-length"))?;
            length = Some(text.trim().parse::<usize>().map_err(|_| invalid("bad content-length"))?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header.value.eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let len = if chunked {
        match chunked_len(&buf[head..])? {
            Some(body) => head + body,
            None => return Ok(None),
        }
    } else if matches!(status, 100..=199 | 204 | 304) {
        head
    } else {
        let length = length
            .ok_or_else(|| invalid("answer without a length (read-to-close is not supported)"))?;
        // A length near usize::MAX would wrap the sum and cut the buffer short.
        head.checked_add(length).ok_or_else(|| invalid("bad content-length"))?
    };
    Ok((buf.len() >= len).then_some(Answer { status, len, close }))
}

/// The length of a whole chunked body at the front of `body`, trailers included.
fn chunked_len(body: &[u8]) -> io::Result<Option<usize>> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body");
    let mut at = 0;
    loop {
        let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&body[at..at + eol]).map_err(|_| invalid())?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid())?;
        at += eol + 2;
        if size == 0 {
            // Trailers, each ending in CRLF, then an empty line.
            loop {
                let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        at = size.checked_add(2).and_then(|n| at.checked_add(n)).ok_or_else(invalid)?;
        if body.len() < at {
            return Ok(None);
        }
    }
}

/// `http://host:port/path` → the address to connect to, the `Host` value and the path.
fn parse_url(
    url: &str,
) -> Result<(SocketAddr, String, String), Box<dyn std::error::Error + Send + Sync>> {
    let rest = url.strip_prefix("http://").ok_or("load: only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port.to_socket_addrs()?.next().ok_or("load: the host resolves to nothing")?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sized_answer_is_whole_only_with_its_body() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_answer(&answer[..answer.len() - 1]).unwrap(), None);
        let whole = parse_answer(answer).unwrap().unwrap();
        assert_eq!((whole.status, whole.len, whole.close), (200, answer.len(), false));
        let mut two = answer.to_vec();
        two.extend_from_slice(answer);
        assert_eq!(parse_answer(&two).unwrap().unwrap().len, answer.len(), "one answer at a time");
    }

    #[test]
    fn a_chunked_answer_ends_at_its_last_chunk_and_trailers() {
        let answer = b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;x=y\r\nhello\r\n0\r\nEtag: 1\r\n\r\n";
        for cut in 1..answer.len() {
            assert_eq!(parse_answer(&answer[..cut]).unwrap(), None, "cut at {cut}");
        }
        let whole = parse_answer(answer).unwrap().unwrap();
        assert_eq!((whole.status, whole.len, whole.close), (502, answer.len(), true));
    }

    #[test]
    fn malformed_answers_are_errors_not_hangs() {
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        // Lengths that would wrap the buffer arithmetic.
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert!(parse_answer(huge.as_bytes()).is_err());
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
        assert!(parse_answer(huge).is_err());
        // A head that never ends: incomplete up to 64 KiB, an error past it.
        let mut endless = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
        while endless.len() <= MAX_HEAD {
            assert_eq!(parse_answer(&endless).unwrap(), None);
            endless.extend_from_slice(&[b'a'; 1024]);
        }
        assert!(parse_answer(&endless).is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nno length").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_answer(b"\x00\x01 nonsense\r\n\r\n").is_err());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        assert_eq!(Report::quantile_ms(&values, 0.5), 50.0);
        assert_eq!(Report::quantile_ms(&values, 0.99), 99.0);
        assert_eq!(Report::quantile_ms(&values, 1.0), 100.0);
        assert_eq!(Report::quantile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn urls_name_the_address_host_and_path() {
        let (addr, host, path) = parse_url("http://127.0.0.1:8080/products/42?x=1").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), path.as_str()),
            (8080, "127.0.0.1:8080", "/products/42?x=1")
        );
        let (_, _, path) = parse_url("http://127.0.0.1:9").unwrap();
        assert_eq!(path, "/");
        assert!(parse_url("https://127.0.0.1/").is_err());
    }

    /// What a test server does with the `n`-th request head on a connection (0: the warm-up).
    #[derive(Clone, Copy)]
    enum Reply {
        Answer,
        AnswerAfter(Duration),
        HangUp,
    }

    /// A real HTTP/1.1 server on loopback for these tests, one thread per connection, doing
    /// `reply(n)` for the connection's `n`-th request head.
    fn server(reply: fn(usize) -> Reply) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let (mut buf, mut pending, mut n) = ([0_u8; 4096], Vec::new(), 0);
                    while let Ok(read @ 1..) = stream.read(&mut buf) {
                        pending.extend_from_slice(&buf[..read]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            match reply(n) {
                                Reply::HangUp => return,
                                // The fault under test: a slow answer.
                                Reply::AnswerAfter(delay) => std::thread::sleep(delay),
                                Reply::Answer => {}
                            }
                            n += 1;
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                            if stream.write_all(answer).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn every_scheduled_request_is_answered_and_timed_from_its_due_time() {
        let addr = server(|_| Reply::Answer);
        let plan = Plan {
            url: format!("http://{addr}/x"),
            rate: 2_000,
            connections: 4,
            duration: Duration::from_millis(250),
        };
        let report = run(&plan).unwrap();
        assert_eq!(report.scheduled, 500);
        assert_eq!(report.errors, 0);
        assert_eq!(report.status.get(&200), Some(&500));
        assert_eq!(report.latency_ns.len(), 500);
        assert_eq!(report.lateness_ns.len(), 500);
        assert_eq!(report.service_ns.len(), 500);
        // Each latency runs from the due time, each service time from the later send: every
        // order statistic of the first is at least the same one of the second.
        assert!(report.latency_ns.iter().zip(&report.service_ns).all(|(due, sent)| due >= sent));
        // Spread over the window, not sent in one burst: the last is due at 249.5 ms.
        assert!(report.elapsed >= Duration::from_millis(249), "{:?}", report.elapsed);
    }

    /// Coordinated omission: with one connection and a server that stalls its first answer
    /// by 100 ms, the requests due during the stall wait behind it — and their latency says so,
    /// counted from when each was due, not from when it could finally leave.
    #[test]
    fn a_stall_is_charged_to_every_request_due_during_it() {
        let addr = server(|n| {
            if n == 1 { Reply::AnswerAfter(Duration::from_millis(100)) } else { Reply::Answer }
        });
        let plan = Plan {
            url: format!("http://{addr}/"),
            rate: 1_000,
            connections: 1,
            duration: Duration::from_millis(200),
        };
        let report = run(&plan).unwrap();
        assert_eq!((report.scheduled, report.errors), (200, 0));
        // Requests due during the stall found the one connection busy.
        assert!(report.held >= 50, "{} held", report.held);
        // Request 0 took ≥ 100 ms; requests 1..50 were due within its first 50 ms and could
        // only leave after it, so each waited ≥ 50 ms. A generator timing from the send would
        // have seen one slow request and 199 fast ones.
        let slow = report.latency_ns.iter().filter(|&&ns| ns >= 50_000_000).count();
        assert!(slow >= 50, "{slow} requests counted the stall");
        assert!(*report.latency_ns.last().unwrap() >= 100_000_000);
        // From the send, the server was slow once: the stalled request alone took ≥ 100 ms.
        assert!(*report.service_ns.last().unwrap() >= 100_000_000);
        let slow_service = report.service_ns.iter().filter(|&&ns| ns >= 50_000_000).count();
        assert!(slow_service < slow, "{slow_service} slow from the send, {slow} from the due time");
    }

    #[test]
    fn a_server_that_hangs_up_costs_errors_not_the_run() {
        // Each connection answers its first request (the warm-up, or the first on a reopened
        // connection) and hangs up on the next.
        let addr = server(|n| if n == 0 { Reply::Answer } else { Reply::HangUp });
        let plan = Plan {
            url: format!("http://{addr}/"),
            rate: 200,
            connections: 2,
            duration: Duration::from_millis(100),
        };
        let report = run(&plan).unwrap();
        // Each scheduled request is either answered (a first on a new connection) or an error.
        assert_eq!(report.scheduled, 20);
        assert_eq!(report.latency_ns.len() as u64 + report.errors, 20);
        assert!(report.errors > 0);
    }
}
