//! The systemd notification protocol as the agent speaks it, against a datagram socket
//! standing in for systemd. Its own test binary (one test), because it sets the process
//! environment (NOTIFY_SOCKET, WATCHDOG_USEC) that sd_notify reads.
use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use cordon_agent::watchdog::{self, Progress, Stages};

/// Every datagram that arrives within `window`.
fn receive_for(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

/// Throws away whatever is queued.
fn drain(sock: &UnixDatagram) {
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    while sock.recv(&mut buf).is_ok() {}
    sock.set_nonblocking(false).expect("blocking");
}

#[test]
fn ready_then_watchdog_only_while_progressing() {
    // Without NOTIFY_SOCKET nothing is sent and nothing fails.
    watchdog::ready("procfs");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind");
    // SAFETY: this test binary has a single test and sets the variables before any other
    // thread (the runtime below) exists.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "200000");
        std::env::remove_var("WATCHDOG_PID");
    }

    watchdog::ready("ebpf");
    let first = receive_for(&sock, Duration::from_millis(200));
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("READY=1\n"), "{first:?}");
    assert!(first[0].contains("STATUS=capturing (ebpf)"), "{first:?}");

    let capture = Progress::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stages = Stages(vec![("capture", capture.clone())]);
        let dog = tokio::spawn(watchdog::run(stages, Duration::from_millis(20)));
        // The stage beats every 20 ms for about 600 ms: the watchdog (checked every 100 ms)
        // is fed.
        let beating = capture.clone();
        let beater = tokio::spawn(async move {
            for _ in 0..30 {
                beating.beat();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let fed = tokio::task::spawn_blocking({
            let sock = sock.try_clone().expect("clone");
            move || receive_for(&sock, Duration::from_millis(550))
        })
        .await
        .expect("receive");
        assert!(
            fed.len() >= 3,
            "watchdog fed only {} times: {fed:?}",
            fed.len()
        );
        assert!(fed.iter().all(|m| m == "WATCHDOG=1\n"), "{fed:?}");
        beater.await.expect("beater");
        // The stage has stopped: after one more check at most, no WATCHDOG=1 any more.
        tokio::time::sleep(Duration::from_millis(250)).await;
        drain(&sock);
        let starved = tokio::task::spawn_blocking({
            let sock = sock.try_clone().expect("clone");
            move || receive_for(&sock, Duration::from_millis(500))
        })
        .await
        .expect("receive");
        assert!(
            starved.is_empty(),
            "watchdog fed without progress: {starved:?}"
        );
        // Progress again, then shutdown: STOPPING=1, and no WATCHDOG=1 after it even
        // though the stage keeps beating (as the capture does while it winds down).
        let beating = capture.clone();
        let beater = tokio::spawn(async move {
            for _ in 0..30 {
                beating.beat();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        drain(&sock);
        watchdog::stopping();
        let after = tokio::task::spawn_blocking({
            let sock = sock.try_clone().expect("clone");
            move || receive_for(&sock, Duration::from_millis(400))
        })
        .await
        .expect("receive");
        assert_eq!(after, vec!["STOPPING=1\n".to_string()]);
        assert!(dog.await.is_ok(), "the watchdog task ends after stopping()");
        beater.await.expect("beater");
    });
}
