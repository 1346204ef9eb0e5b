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

/// A loopback TCP proxy to `target`: while cut, every connection through it is dropped and new
/// ones are closed at once, as when the service is down; restored, it relays again.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
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
        let (is_cut, tracked) = (cut.clone(), relays.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(Ordering::Acquire) {
                    continue;
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tracked.lock().unwrap().push(relay.abort_handle());
            }
        });
        Self { addr, cut, relays, task }
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

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
