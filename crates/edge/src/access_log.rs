//! The access log: one line per request, on every transport, written without ever blocking a
//! worker.
//!
//! A gateway logs every request, so the log is on the hot path: a line is formatted straight
//! into bytes (no per-field allocation; the date of the current second is cached per thread),
//! appended to a shared in-memory buffer under a short lock, and written out by a thread of its
//! own. When the disk cannot keep up and the buffer reaches its bound, lines are dropped and
//! counted (`portico_access_log_dropped_total`) rather than stalling requests — nginx blocks its
//! worker on a slow disk instead.
//!
//! Installed once per process ([`install`]); without it (tests, in-process calls) a request's
//! line goes to `tracing` as before.

use std::{
    cell::{Cell, RefCell},
    io::Write,
    net::IpAddr,
    sync::{Arc, Condvar, Mutex, OnceLock, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use metrics::Counter;

use crate::pipeline::push_decimal;

/// The most bytes waiting for the writer; past it, lines are dropped (and counted).
const MAX_PENDING: usize = 4 * 1024 * 1024;
/// The writer is woken once this much is waiting, and otherwise every `FLUSH_EVERY`.
const WAKE_AT: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-02T06:03:12.123Z 127.0.0.1 3f9a… "GET /api/x" 200 1043 0.412ms
    /// upstream=10.0.0.7:8080 0.380ms`: time the head arrived, client, request id, method and
    /// path (never the query, which may carry secrets), status, body bytes (`-` when not
    /// counted), duration, and the upstream endpoint with its time to the response head.
    Text,
    /// One JSON object per line.
    Json,
}

/// The process's access log.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    shared: Arc<Shared>,
    dropped: Counter,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Installs the process's access log, writing to `out` from a thread of its own. Once per
/// process; later calls change nothing and return `false`.
pub fn install(out: Box<dyn Write + Send>, format: Format) -> bool {
    let shared = Arc::new(Shared::default());
    let log = AccessLog {
        format,
        shared: shared.clone(),
        dropped: metrics::counter!(crate::metrics::ACCESS_LOG_DROPPED),
    };
    if LOG.set(log).is_err() {
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("portico-access-log".into())
        .spawn(move || write_forever(&shared, out));
    spawned.is_ok()
}

/// The installed access log, if any.
pub(crate) fn get() -> Option<&'static AccessLog> {
    LOG.get()
}

/// Writes what is pending now (at shutdown).
pub fn flush() {
    if let Some(log) = LOG.get() {
        log.shared.wake.notify_one();
        // The writer takes the buffer under the lock; wait until it has.
        for _ in 0..50 {
            if log.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn write_forever(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(WAKE_AT * 2);
    loop {
        {
            let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut *pending, &mut batch);
        }
        if !batch.is_empty() {
            // A failing disk loses lines, never requests.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
    }
}

impl AccessLog {
    /// The start of a request's line: what is known when its head has been read.
    pub(crate) fn begin(
        &self,
        at: SystemTime,
        client: IpAddr,
        id: &str,
        method: &str,
        path: &str,
    ) -> Vec<u8> {
        // Room for the whole line, its end included: a JSON line outgrew 192 bytes and was
        // moved once per request (`bench/instructions --access-log json`).
        let fields = match self.format {
            Format::Text => 192,
            Format::Json => 384,
        };
        let mut line = Vec::with_capacity(fields + path.len());
        match self.format {
            Format::Text => {
                push_time(&mut line, at);
                line.push(b' ');
                push_ip(&mut line, client);
                line.push(b' ');
                line.extend_from_slice(id.as_bytes());
                line.extend_from_slice(b" \"");
                line.extend_from_slice(method.as_bytes());
                line.push(b' ');
                push_escaped(&mut line, path);
                line.push(b'"');
            }
            Format::Json => {
                line.extend_from_slice(b"{\"time\":\"");
                push_time(&mut line, at);
                line.extend_from_slice(b"\",\"client\":\"");
                push_ip(&mut line, client);
                line.extend_from_slice(b"\",\"id\":\"");
                push_escaped(&mut line, id);
                line.extend_from_slice(b"\",\"method\":\"");
                push_escaped(&mut line, method);
                line.extend_from_slice(b"\",\"path\":\"");
                push_escaped(&mut line, path);
                line.push(b'"');
            }
        }
        line
    }

    /// Ends `line` with what the response was and hands it to the writer.
    pub(crate) fn end(&self, mut line: Vec<u8>, served: &Served<'_>) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match self.format {
            Format::Text => {
                line.push(b' ');
                push_decimal(&mut line, u64::from(served.status));
                line.push(b' ');
                match served.bytes {
                    Some(bytes) => push_decimal(&mut line, bytes),
                    None => line.push(b'-'),
                }
                line.push(b' ');
                push_millis(&mut line, micros(served.duration));
                line.extend_from_slice(b"ms");
                if let Some((upstream, took)) = served.upstream {
                    line.extend_from_slice(b" upstream=");
                    line.extend_from_slice(upstream.as_bytes());
                    line.push(b' ');
                    push_millis(&mut line, micros(took));
                    line.extend_from_slice(b"ms");
                }
                line.push(b'\n');
            }
            Format::Json => {
                line.extend_from_slice(b",\"status\":");
                push_decimal(&mut line, u64::from(served.status));
                line.extend_from_slice(b",\"bytes\":");
                match served.bytes {
                    Some(bytes) => push_decimal(&mut line, bytes),
                    None => line.extend_from_slice(b"null"),
                }
                line.extend_from_slice(b",\"duration_ms\":");
                push_millis(&mut line, micros(served.duration));
                if let Some((upstream, took)) = served.upstream {
                    line.extend_from_slice(b",\"upstream\":\"");
                    push_escaped(&mut line, upstream);
                    line.extend_from_slice(b"\",\"upstream_ms\":");
                    push_millis(&mut line, micros(took));
                }
                line.extend_from_slice(b"}\n");
            }
        }
        self.submit(&line);
    }

    fn submit(&self, line: &[u8]) {
        let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() + line.len() > MAX_PENDING {
            drop(pending);
            self.dropped.increment(1);
            return;
        }
        pending.extend_from_slice(line);
        let wake = pending.len() >= WAKE_AT;
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// What the end of a request's line says.
#[derive(Debug, Default)]
pub(crate) struct Served<'a> {
    pub(crate) status: u16,
    /// Response body bytes, when known.
    pub(crate) bytes: Option<u64>,
    pub(crate) duration: Duration,
    /// The upstream endpoint that answered, and how long it took to its response head.
    pub(crate) upstream: Option<(&'a str, Duration)>,
}

/// Appends `at` as RFC 3339 UTC with milliseconds; the date and time of the second are
/// formatted once per second per thread.
fn push_time(out: &mut Vec<u8>, at: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
    }
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, civil(secs));
        }
        out.extend_from_slice(&cached.1);
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn civil(secs: u64) -> [u8; 19] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = [0_u8; 19];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut value = value.max(0);
        for i in (0..width).rev() {
            text[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, i64::try_from(rem / 3600).unwrap_or(0), 2);
    put(14, i64::try_from(rem / 60 % 60).unwrap_or(0), 2);
    put(17, i64::try_from(rem % 60).unwrap_or(0), 2);
    text[4] = b'-';
    text[7] = b'-';
    text[10] = b'T';
    text[13] = b':';
    text[16] = b':';
    text
}

/// Microseconds as milliseconds with three decimals.
fn push_millis(out: &mut Vec<u8>, micros: u64) {
    push_decimal(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// The wall-clock time of `instant`, a recent reading of the monotonic clock (a request's
/// start): from a pair of readings of both clocks this thread took less than a second before,
/// so a line's time costs no clock read of its own (it cost two: the wall clock, and the time
/// since the start). A step of the wall clock (NTP) reaches the log within a second.
pub(crate) fn wall_time(instant: Instant) -> SystemTime {
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    const FRESH: Duration = Duration::from_secs(1);
    ANCHOR.with(|anchor| {
        let (at, wall) = match anchor.get() {
            Some((at, wall)) if instant.checked_duration_since(at).is_some_and(|d| d < FRESH) => {
                (at, wall)
            }
            // Stale, or older than the anchor (a request that began before it was taken).
            _ => {
                let pair = (Instant::now(), SystemTime::now());
                anchor.set(Some(pair));
                pair
            }
        };
        match instant.checked_duration_since(at) {
            Some(after) => wall + after,
            None => wall - at.duration_since(instant),
        }
    })
}

/// Appends a client address: an IPv4 one digit by digit (the common case, on every line —
/// `Display` through `fmt` cost about 1,000 instructions a line), an IPv6 one by `Display`.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `text` with what would break a line or a JSON string escaped (`"`, `\`, controls).
/// The runs between such bytes (all of a usual path) are copied whole, not byte by byte.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut run = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if !matches!(b, b'"' | b'\\' | 0..=0x1f | 0x7f) {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        if b == b'"' || b == b'\\' {
            out.extend_from_slice(&[b'\\', b]);
        } else {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(format: Format) -> AccessLog {
        AccessLog {
            format,
            shared: Arc::new(Shared::default()),
            dropped: metrics::counter!("test"),
        }
    }

    fn line(format: Format) -> String {
        let log = log(format);
        let at = UNIX_EPOCH + Duration::from_millis(1_764_655_392_123);
        let line = log.begin(at, IpAddr::from([10, 0, 0, 7]), "abc", "GET", "/a\"b");
        log.end(
            line,
            &Served {
                status: 200,
                bytes: Some(1043),
                duration: Duration::from_micros(412),
                upstream: Some(("10.0.0.9:8080", Duration::from_micros(380))),
            },
        );
        String::from_utf8(log.shared.pending.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_text_line_has_every_field_an_operator_needs() {
        assert_eq!(
            line(Format::Text),
            "2025-12-02T06:03:12.123Z 10.0.0.7 abc \"GET /a\\\"b\" 200 1043 0.412ms \
             upstream=10.0.0.9:8080 0.380ms\n"
        );
    }

    #[test]
    fn a_json_line_is_one_valid_object() {
        let text = line(Format::Json);
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["time"], "2025-12-02T06:03:12.123Z");
        assert_eq!(value["path"], "/a\"b");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 1043);
        assert_eq!(value["duration_ms"], 0.412);
        assert_eq!(value["upstream"], "10.0.0.9:8080");
        assert_eq!(value["client"], "10.0.0.7");
    }

    // A hostile path cannot forge a second line or break the JSON object: quotes, backslashes,
    // control bytes (a CRLF, an escape sequence, NUL, DEL) are escaped wherever they sit —
    // first, last, in a row — and everything else, UTF-8 included, is copied as it came.
    #[test]
    fn hostile_paths_are_escaped_and_the_rest_copied_whole() {
        for path in [
            "/plain/path?q=1",
            "\"/a\"\"b\\",
            "/x\r\nFORGED 200 line\n",
            "\u{0}/\u{1b}[31mred\u{7f}",
            "/caf\u{e9}/\u{1f600}",
            "",
        ] {
            let mut out = Vec::new();
            push_escaped(&mut out, path);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.bytes().any(|b| b < 0x20 || b == 0x7f), "a raw control byte in {text:?}");
            let back: String = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(back, path);
        }
        let log = log(Format::Text);
        let line = log.begin(UNIX_EPOCH, IpAddr::from([10, 0, 0, 7]), "id", "GET", "/x\nforged");
        assert!(!line.contains(&b'\n'), "the path broke the line");
    }

    #[test]
    fn a_lines_time_is_the_wall_clock_at_the_instant_given() {
        let close = |a: SystemTime, b: SystemTime| {
            let apart = a.duration_since(b).unwrap_or_else(|e| e.duration());
            assert!(apart < Duration::from_millis(50), "{a:?} vs {b:?}");
        };
        // Fresh, from the anchor, and earlier than the anchor: each the wall clock then.
        close(wall_time(Instant::now()), SystemTime::now());
        close(wall_time(Instant::now()), SystemTime::now());
        let earlier = Instant::now().checked_sub(Duration::from_secs(30)).unwrap();
        close(wall_time(earlier), SystemTime::now() - Duration::from_secs(30));
        // A stale anchor is taken again: a minute on, the time is still right.
        let later = Instant::now() + Duration::from_secs(60);
        close(wall_time(later), SystemTime::now() + Duration::from_secs(60));
    }

    #[test]
    fn client_addresses_are_written_as_their_usual_text() {
        for ip in [
            IpAddr::from([0, 0, 0, 0]),
            IpAddr::from([10, 0, 0, 7]),
            IpAddr::from([255, 255, 255, 255]),
            IpAddr::from([192, 168, 100, 10]),
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn dates_are_right_across_years_and_leap_days() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_251_199, "2024-02-29T23:59:59"),
            (4_102_444_800, "2100-01-01T00:00:00"),
        ] {
            assert_eq!(std::str::from_utf8(&civil(secs)).unwrap(), text);
        }
    }

    #[test]
    fn a_full_buffer_drops_lines_instead_of_blocking() {
        let log = log(Format::Text);
        let line = vec![b'x'; 1024];
        for _ in 0..(MAX_PENDING / 1024 + 10) {
            log.submit(&line);
        }
        assert!(log.shared.pending.lock().unwrap().len() <= MAX_PENDING);
    }
}
