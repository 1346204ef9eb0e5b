//! Discovery against a real (tiny) name server on loopback and real files on disk.
//!
//! DNS tests run in real time: with paused time, tokio would advance the clock whenever the
//! runtime is idle, which can fire the resolver's timeout while an answer is on its way. They
//! keep TTLs at 1s and wait on channels with deadlines, and learn that the watcher asked again
//! from the server's own query counter, never from a sleep. File tests use paused time.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_resolver::proto::{
    op::{Message, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, SRV},
    },
};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, watch},
    task::JoinHandle,
    time::timeout,
};

use super::{dns::next_delay, file::parse_file, *};

/// Long enough for a loaded 2-core CI machine; a passing run takes a fraction of it.
const DEADLINE: Duration = Duration::from_secs(10);

// === a tiny authoritative name server ===

/// How the test server answers, switched by the test while the watcher runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Answers from the zone (NOERROR, possibly with no records).
    Answer,
    /// NXDOMAIN for every name.
    NxDomain,
    /// NOERROR without records for every name.
    Empty,
    /// Drops every query, as a dead server would.
    Silent,
}

/// An SRV record's port and target, and whether the target's addresses ride along in the
/// additional section.
#[derive(Clone)]
struct SrvTarget {
    port: u16,
    target: &'static str,
    glue: bool,
}

#[derive(Default)]
struct Zone {
    a: HashMap<String, Vec<Ipv4Addr>>,
    aaaa: HashMap<String, Vec<Ipv6Addr>>,
    srv: HashMap<String, Vec<SrvTarget>>,
}

struct State {
    mode: Mode,
    ttl: u32,
    zone: Zone,
    /// Queries seen since the mode last changed, so a test can wait for the watcher to have
    /// asked again under the new mode.
    seen: watch::Sender<usize>,
}

struct TestDns {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    seen: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Zone keys are lower-case and fully qualified, like the names on the wire.
fn key(name: &str) -> String {
    let mut key = name.to_ascii_lowercase();
    if !key.ends_with('.') {
        key.push('.');
    }
    key
}

fn name(text: &str) -> Name {
    Name::from_ascii(key(text)).unwrap()
}

impl TestDns {
    async fn start(ttl: u32, zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (seen, seen_rx) = watch::channel(0);
        let state = Arc::new(Mutex::new(State { mode: Mode::Answer, ttl, zone, seen }));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let mut buf = vec![0; 4096];
                loop {
                    let Ok((len, peer)) = socket.recv_from(&mut buf).await else { return };
                    let Ok(request) = Message::from_vec(&buf[..len]) else { continue };
                    let reply = state.lock().unwrap().reply(&request);
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
                    }
                }
            }
        });
        Self { addr, state, seen: seen_rx, task }
    }

    fn set_mode(&self, mode: Mode) {
        let mut state = self.state.lock().unwrap();
        state.mode = mode;
        state.seen.send_replace(0);
    }

    fn set_a(&self, host: &str, ips: &[Ipv4Addr]) {
        self.state.lock().unwrap().zone.a.insert(key(host), ips.to_vec());
    }

    /// Waits until the server has seen `count` queries under its current mode.
    async fn wait_for_queries(&self, count: usize) {
        let mut seen = self.seen.clone();
        timeout(DEADLINE, seen.wait_for(|seen| *seen >= count))
            .await
            .unwrap_or_else(|_| panic!("the watcher did not ask {count} times within {DEADLINE:?}"))
            .unwrap();
    }

    fn config(&self, source: DiscoveryConfig) -> DiscoveryConfig {
        DiscoveryConfig {
            nameserver: Some(self.addr),
            // Failures are retried quickly; good answers wait for their 1s TTL.
            min_interval: Duration::from_millis(100),
            ..source
        }
    }
}

impl State {
    fn reply(&mut self, request: &Message) -> Option<Message> {
        let query = request.queries.first()?.clone();
        self.seen.send_modify(|seen| *seen += 1);
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.add_query(query.clone());
        match self.mode {
            Mode::Silent => return None,
            Mode::NxDomain => {
                reply.metadata.response_code = ResponseCode::NXDomain;
                return Some(reply);
            }
            Mode::Empty => return Some(reply),
            Mode::Answer => {}
        }
        let owner = query.name().clone();
        let owner_key = key(&owner.to_ascii());
        match query.query_type() {
            RecordType::A => reply.add_answers(self.a_records(&owner_key, &owner)),
            RecordType::AAAA => reply.add_answers(self.aaaa_records(&owner_key, &owner)),
            RecordType::SRV => {
                for target in self.zone.srv.get(&owner_key).cloned().unwrap_or_default() {
                    let target_name = name(target.target);
                    let srv = SRV::new(0, 0, target.port, target_name.clone());
                    reply.add_answer(Record::from_rdata(owner.clone(), self.ttl, RData::SRV(srv)));
                    if target.glue {
                        let target_key = key(target.target);
                        for record in self.a_records(&target_key, &target_name) {
                            reply.add_additional(record);
                        }
                        for record in self.aaaa_records(&target_key, &target_name) {
                            reply.add_additional(record);
                        }
                    }
                }
                &mut reply
            }
            _ => &mut reply,
        };
        Some(reply)
    }

    fn a_records(&self, key: &str, owner: &Name) -> Vec<Record> {
        let ips = self.zone.a.get(key).cloned().unwrap_or_default();
        ips.into_iter()
            .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::A(A(ip))))
            .collect()
    }

    fn aaaa_records(&self, key: &str, owner: &Name) -> Vec<Record> {
        let ips = self.zone.aaaa.get(key).cloned().unwrap_or_default();
        ips.into_iter()
            .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::AAAA(AAAA(ip))))
            .collect()
    }
}

// === helpers ===

/// Starts a watcher whose updates land in a channel; a short per-query DNS timeout keeps the
/// "server stopped answering" phase to about a second.
fn watch_updates(
    config: DiscoveryConfig,
) -> (JoinHandle<()>, mpsc::UnboundedReceiver<Vec<String>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle =
        spawn_with("catalog".to_owned(), config, Some(Duration::from_secs(1)), move |list| {
            tx.send(list).is_ok()
        });
    (handle, rx)
}

async fn next_update(rx: &mut mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
    timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no endpoint update within {DEADLINE:?}"))
        .expect("the watcher stopped")
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("portico-discovery-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const IP1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const IP2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
const IP3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 13);

// === DNS A/AAAA ===

#[tokio::test]
async fn dns_applies_a_changed_record_once_its_ttl_has_passed() {
    let mut zone = Zone::default();
    zone.a.insert(key("catalog.test"), vec![IP2, IP1, IP1]);
    zone.aaaa.insert(key("catalog.test"), vec![Ipv6Addr::LOCALHOST]);
    let dns = TestDns::start(1, zone).await;
    let (_watcher, mut rx) = watch_updates(dns.config(DiscoveryConfig {
        dns: Some("catalog.test:7001".to_owned()),
        ..Default::default()
    }));

    // Sorted, de-duplicated, both families, IPv6 bracketed.
    assert_eq!(
        next_update(&mut rx).await,
        strings(&["http://127.0.0.11:7001", "http://127.0.0.12:7001", "http://[::1]:7001"])
    );

    dns.set_a("catalog.test", &[IP3]);
    assert_eq!(
        next_update(&mut rx).await,
        strings(&["http://127.0.0.13:7001", "http://[::1]:7001"])
    );
}

#[tokio::test]
async fn dns_keeps_the_last_good_set_through_nxdomain_empty_answers_and_silence() {
    let mut zone = Zone::default();
    zone.a.insert(key("catalog.test"), vec![IP1]);
    let dns = TestDns::start(1, zone).await;
    let (_watcher, mut rx) = watch_updates(dns.config(DiscoveryConfig {
        dns: Some("catalog.test:7001".to_owned()),
        ..Default::default()
    }));
    assert_eq!(next_update(&mut rx).await, strings(&["http://127.0.0.11:7001"]));

    // Each bad phase lasts until the watcher has asked (A and AAAA) at least twice; nothing
    // it learns there may reach the upstream.
    for mode in [Mode::NxDomain, Mode::Empty, Mode::Silent] {
        dns.set_mode(mode);
        dns.wait_for_queries(4).await;
        assert!(rx.try_recv().is_err(), "an update was sent while the server answered {mode:?}");
    }

    // A good answer again, with a new address: applied, and it is the very next update
    // (no empty or partial list slipped in between).
    dns.set_a("catalog.test", &[IP2]);
    dns.set_mode(Mode::Answer);
    assert_eq!(next_update(&mut rx).await, strings(&["http://127.0.0.12:7001"]));
}

// === DNS SRV ===

#[tokio::test]
async fn srv_targets_become_endpoints_on_their_own_ports() {
    let mut zone = Zone::default();
    zone.srv.insert(
        key("_http._tcp.catalog.test"),
        vec![
            // Addresses in the additional section.
            SrvTarget { port: 7001, target: "a.catalog.test", glue: true },
            // No additional records: the watcher looks the target up.
            SrvTarget { port: 7002, target: "b.catalog.test", glue: false },
        ],
    );
    zone.a.insert(key("a.catalog.test"), vec![IP1]);
    zone.aaaa.insert(key("a.catalog.test"), vec![Ipv6Addr::LOCALHOST]);
    zone.a.insert(key("b.catalog.test"), vec![IP2]);
    let dns = TestDns::start(1, zone).await;
    let (_watcher, mut rx) = watch_updates(dns.config(DiscoveryConfig {
        srv: Some("_http._tcp.catalog.test".to_owned()),
        ..Default::default()
    }));

    assert_eq!(
        next_update(&mut rx).await,
        strings(&["http://127.0.0.11:7001", "http://127.0.0.12:7002", "http://[::1]:7001"])
    );

    // The SRV set is re-resolved on its TTL too: a target's new address is picked up.
    dns.set_a("b.catalog.test", &[IP3]);
    assert_eq!(
        next_update(&mut rx).await,
        strings(&["http://127.0.0.11:7001", "http://127.0.0.13:7002", "http://[::1]:7001"])
    );
}

#[test]
fn the_ttl_sets_the_next_round_within_min_and_max() {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
    assert_eq!(next_delay(Some(30), min, max), Duration::from_secs(30));
    assert_eq!(next_delay(Some(0), min, max), min, "a zero TTL must not spin");
    assert_eq!(next_delay(Some(86_400), min, max), max, "a day-long TTL is capped");
    assert_eq!(next_delay(None, min, max), max);
}

// === file ===

#[tokio::test(start_paused = true)]
async fn file_edits_are_applied_and_a_missing_or_empty_file_keeps_the_last_list() {
    let dir = TempDir::new("edits");
    let path = dir.0.join("catalog.endpoints");
    std::fs::write(&path, "# catalog replicas\nhttp://127.0.0.1:7001\n\n127.0.0.1:7002\n").unwrap();
    let (_watcher, mut rx) =
        watch_updates(DiscoveryConfig { file: Some(path.clone()), ..Default::default() });
    assert_eq!(
        next_update(&mut rx).await,
        strings(&["http://127.0.0.1:7001", "http://127.0.0.1:7002"])
    );

    std::fs::write(&path, "http://127.0.0.1:7003\n").unwrap();
    assert_eq!(next_update(&mut rx).await, strings(&["http://127.0.0.1:7003"]));

    // Deleted, then emptied (only a comment left): several polls pass without an update.
    std::fs::remove_file(&path).unwrap();
    assert!(
        timeout(Duration::from_secs(5), rx.recv()).await.is_err(),
        "a missing file emptied the set"
    );
    std::fs::write(&path, "# drained\n").unwrap();
    assert!(
        timeout(Duration::from_secs(5), rx.recv()).await.is_err(),
        "an empty file emptied the set"
    );

    std::fs::write(&path, "http://127.0.0.1:7004\n").unwrap();
    assert_eq!(next_update(&mut rx).await, strings(&["http://127.0.0.1:7004"]));

    // The same list written differently is not a change.
    std::fs::write(&path, "127.0.0.1:7004 # same replica\n").unwrap();
    assert!(
        timeout(Duration::from_secs(5), rx.recv()).await.is_err(),
        "an unchanged list was sent again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_file_that_appears_later_is_picked_up_and_the_watcher_stops_with_its_upstream() {
    let dir = TempDir::new("later");
    let path = dir.0.join("catalog.endpoints");
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The upstream takes the first list, then is dropped.
    let watcher = spawn(
        "catalog".to_owned(),
        DiscoveryConfig { file: Some(path.clone()), ..Default::default() },
        move |list| {
            let _ = tx.send(list);
            false
        },
    );
    assert!(timeout(Duration::from_secs(3), rx.recv()).await.is_err());

    std::fs::write(&path, "127.0.0.1:7001\n").unwrap();
    assert_eq!(next_update(&mut rx).await, strings(&["http://127.0.0.1:7001"]));
    timeout(DEADLINE, watcher).await.expect("the watcher outlived its upstream").unwrap();
}

#[test]
fn file_lines_become_base_urls_and_bad_lines_are_skipped() {
    let text = "\
        # replicas of catalog\n\
        http://127.0.0.1:7001/\n\
        127.0.0.1:7001\n\
        [::1]:7002\n\
        https://Catalog-1.internal:8443\n\
        ftp://127.0.0.1:21\n\
        127.0.0.1\n\
        http://127.0.0.1:7003/v1\n\
        \n\
        catalog-2.internal:7004   # trailing comment\n";
    assert_eq!(
        parse_file("catalog", Path::new("catalog.endpoints"), text),
        strings(&["http://127.0.0.1:7001", "http://[::1]:7002", "http://catalog-2.internal:7004",])
    );
}

// === config ===

#[test]
fn config_reads_from_toml_with_documented_defaults() {
    let config: DiscoveryConfig =
        toml::from_str("dns = \"catalog.internal:7001\"\nmin_interval = \"250ms\"\n").unwrap();
    assert_eq!(
        config,
        DiscoveryConfig {
            dns: Some("catalog.internal:7001".to_owned()),
            min_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(60),
            interval: Duration::from_secs(1),
            ..DiscoveryConfig::default()
        }
    );
    assert!(config.validate("upstreams.catalog.discovery").is_ok());

    let error = toml::from_str::<DiscoveryConfig>("dsn = \"catalog.internal:7001\"\n").unwrap_err();
    assert!(error.to_string().contains("dsn"), "{error}");
}

#[test]
fn validation_errors_name_the_key() {
    let base = "upstreams.catalog.discovery";
    let dns = |value: &str| DiscoveryConfig { dns: Some(value.to_owned()), ..Default::default() };
    let cases = [
        (DiscoveryConfig::default(), base.to_owned()),
        (
            DiscoveryConfig { file: Some("x".into()), ..dns("catalog.internal:7001") },
            format!("{base}.file"),
        ),
        (dns("catalog.internal"), format!("{base}.dns")),
        (dns("http://catalog.internal:7001"), format!("{base}.dns")),
        (dns("::1:7001"), format!("{base}.dns")),
        (dns("catalog.internal:0"), format!("{base}.dns")),
        (dns("catalog.internal:http"), format!("{base}.dns")),
        (
            DiscoveryConfig { srv: Some("_http._tcp.bad name".to_owned()), ..Default::default() },
            format!("{base}.srv"),
        ),
        (
            DiscoveryConfig {
                file: Some("x".into()),
                nameserver: Some(SocketAddr::from(([127, 0, 0, 1], 53))),
                ..Default::default()
            },
            format!("{base}.nameserver"),
        ),
        (
            DiscoveryConfig { min_interval: Duration::ZERO, ..dns("catalog.internal:7001") },
            format!("{base}.min_interval"),
        ),
        (
            DiscoveryConfig { interval: Duration::ZERO, ..dns("catalog.internal:7001") },
            format!("{base}.interval"),
        ),
        (
            DiscoveryConfig {
                min_interval: Duration::from_secs(120),
                ..dns("catalog.internal:7001")
            },
            format!("{base}.min_interval"),
        ),
    ];
    for (config, expected) in cases {
        match config.validate(base) {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, expected, "{config:?}: {message}");
            }
            other => panic!("{config:?} should fail at `{expected}`, got {other:?}"),
        }
    }

    for good in ["catalog.internal:7001", "127.0.0.1:7001", "[::1]:7001", "localhost:80"] {
        assert!(dns(good).validate(base).is_ok(), "{good}");
    }
    let srv = DiscoveryConfig {
        srv: Some("_http._tcp.catalog.internal".to_owned()),
        ..Default::default()
    };
    assert!(srv.validate(base).is_ok());
}
