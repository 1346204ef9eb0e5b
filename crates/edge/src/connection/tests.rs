use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;

const TIMEOUTS: Timeouts = Timeouts {
    head: Duration::from_secs(10),
    idle: Duration::from_secs(75),
    send: Duration::from_secs(60),
};

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_sends_a_byte_ends_at_the_head_timeout() {
    let (_client, server) = duplex(1024);
    let mut guarded = Guarded::new(server, TIMEOUTS);
    let started = Instant::now();
    let mut buf = [0_u8; 16];
    let error = guarded.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), TIMEOUTS.head);
}

#[tokio::test(start_paused = true)]
async fn a_trickle_shorter_than_the_protocol_preface_does_not_extend_the_head_timeout() {
    let (mut client, server) = duplex(1024);
    let mut guarded = Guarded::new(server, TIMEOUTS);
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            client.write_all(b"P").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        client
    });
    let mut buf = [0_u8; 64];
    let error = loop {
        match guarded.read(&mut buf).await {
            Ok(n) => assert!(n > 0),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), TIMEOUTS.head, "ten bytes in ten seconds end it on time");
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn after_the_head_an_active_connection_lives_and_an_idle_one_ends() {
    let (mut client, server) = duplex(1024);
    let mut guarded = Guarded::new(server, TIMEOUTS);
    client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0_u8; 64];
    assert!(guarded.read(&mut buf).await.unwrap() > 0);
    guarded.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
    // A byte every minute, for ten minutes: never idle for the window.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);
    }
    // Then silence: closed once idle for between one and two windows.
    let silent_from = Instant::now();
    let error = guarded.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    let idle = silent_from.elapsed();
    assert!(idle >= TIMEOUTS.idle && idle <= 2 * TIMEOUTS.idle, "closed after {idle:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_response_is_cut_at_the_send_timeout() {
    let (client, server) = duplex(64);
    let mut guarded = Guarded::new(server, TIMEOUTS);
    let started = Instant::now();
    // The client reads nothing: the 64-byte pipe fills and the write waits.
    let error = guarded.write_all(&[b'x'; 4096]).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), TIMEOUTS.send);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_that_keeps_reading_is_not_cut() {
    let (mut client, server) = duplex(64);
    let mut guarded = Guarded::new(server, TIMEOUTS);
    let reader = tokio::spawn(async move {
        let mut total = 0;
        let mut buf = [0_u8; 64];
        while total < 4096 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            total += client.read(&mut buf).await.unwrap();
        }
        total
    });
    // 64 bytes every 30 s: two minutes per 256 bytes, far past the send timeout in all, but
    // never blocked for it at once.
    guarded.write_all(&[b'x'; 4096]).await.unwrap();
    assert_eq!(reader.await.unwrap(), 4096);
}

#[test]
fn the_cap_refuses_over_it_and_frees_a_slot_when_a_connection_ends() {
    let slots = Slots::new("test", 2);
    let a = slots.take().expect("first");
    let _b = slots.take().expect("second");
    assert!(slots.take().is_none(), "over the cap");
    drop(a);
    assert!(slots.take().is_some(), "a slot came back");
}

#[test]
fn the_derived_cap_keeps_room_for_upstreams_and_shares_between_gateways() {
    assert_eq!(derived_max_connections(1024, 1), 384);
    assert_eq!(derived_max_connections(1024, 3), 128);
    assert_eq!(derived_max_connections(65_536, 3), 10_880);
    assert_eq!(derived_max_connections(100, 3), 16, "never below a usable floor");
    assert!(open_file_limit() >= 16);
}
