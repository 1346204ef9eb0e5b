//! The real services tests run against (Redis), and a loopback proxy that simulates their
//! outage: a test cuts and restores the proxy, never the shared service itself.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinHandle},
};

/// Where the machine's Redis listens.
pub const REDIS: &str = "127.0.0.1:6379";

/// `Some(redis://…)` when Redis answers on [`REDIS`]. Without it, a test under CI (`CI=true`)
/// fails loudly, and elsewhere it is skipped with one line naming the service.
pub async fn redis_or_skip(test: &str) -> Option<String> {
    let reachable = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(REDIS)).await;
    if matches!(reachable, Ok(Ok(_))) {
        return Some(format!("redis://{REDIS}"));
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: Redis must be running on {REDIS} in CI");
    }
    eprintln!("skipped {test}: Redis is not running on {REDIS}");
    None
}

/// A key prefix of `test`'s own in the shared Redis, unique to this process and moment, so that
/// tests running in parallel (and earlier runs' leftovers) never meet.
pub fn key_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    format!("portico-test:{test}:{}:{nanos}", std::process::id())
}

/// A loopback TCP proxy to `target`: while cut, every connection through it is dropped and new
/// ones are closed at once, as when the service is down; restored, it relays again. It keeps
/// the first [`FaultProxy::SENT_KEPT`] bytes clients sent, so a test can see what went over the
/// wire (how many commands a request cost).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
    sent: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on `127.0.0.1:0` to `target`.
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target.parse().expect("a socket address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let cut = Arc::new(AtomicBool::new(false));
        let relays = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (is_cut, tracked, log) = (cut.clone(), relays.clone(), sent.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if is_cut.load(Ordering::Acquire) {
                    continue;
                }
                let log = log.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(target).await {
                        relay(client, upstream, &log).await;
                    }
                });
                tracked.lock().unwrap().push(relay.abort_handle());
            }
        });
        Self { addr, cut, relays, sent, task }
    }

    /// How many of the bytes clients sent are kept.
    pub const SENT_KEPT: usize = 1 << 20;

    /// The bytes clients have sent through the proxy so far (the first [`Self::SENT_KEPT`]).
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The outage: open connections are dropped, new ones closed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// The end of the outage.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

/// Relays one connection both ways, noting what the client sends.
async fn relay(client: TcpStream, upstream: TcpStream, log: &Mutex<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let up = async {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut log = log.lock().unwrap();
                let room = FaultProxy::SENT_KEPT.saturating_sub(log.len());
                log.extend_from_slice(&buf[..n.min(room)]);
            }
            if upstream_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
