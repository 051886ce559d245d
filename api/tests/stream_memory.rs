//! Live streams that closed give their memory back: thousands of SSE connections once
//! raised `berth serve`'s resident memory from 32 to 118 MB, and it stayed there after they
//! closed. Measured on the real binary, from outside, as an operator would see it.

#[allow(dead_code)]
mod cli_support;

use std::time::{Duration, Instant};

use cli_support::{data_dir, Serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened at once: enough to move resident memory by tens of megabytes.
const CONNECTIONS: usize = 1500;

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Lets this process (and the Berth it starts) hold every connection at once.
fn allow_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct of ours.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the hard limit of open files ({}) is below {wanted}",
        limit.rlim_max
    );
}

/// Opens `CONNECTIONS` event streams, waits until each has delivered the log so far,
/// keeps them open a few seconds, and returns Berth's memory while they were open.
async fn burst(address: &str, token: &str, pid: u32) -> u64 {
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(address).await.expect("connecting");
        let request = format!(
            "GET /api/v1/events/stream HTTP/1.1\r\nHost: berth\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("asking");
        streams.push(stream);
    }
    let mut buffer = vec![0u8; 64 * 1024];
    for stream in &mut streams {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("a stream answers");
        assert!(read.expect("reading") > 0);
    }
    // Long enough for Berth to see them all open (it looks every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    rss_kib(pid)
}

/// Berth's memory once it fell to `at_most` (or after 30 s).
async fn settled(pid: u32, at_most: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = rss_kib(pid);
    while now > at_most && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        now = rss_kib(pid);
    }
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_live_streams_give_their_memory_back() {
    // Each side holds one descriptor per stream, and Berth a few dozen more of its own.
    allow_open_files(CONNECTIONS as u64 + 512);
    let (_guard, dir) = data_dir("berth-stream-memory-");
    let berth = Serve::start(&dir, &["--runtime", "process"]);
    let pid = berth.pid();
    let address = berth.base_url().trim_start_matches("http://").to_string();
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("the admin token");
    let token = token.trim();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid);

    let open = burst(&address, token, pid).await;
    let grown = open.saturating_sub(before);
    let after_first = settled(pid, open - grown / 2).await;
    // Again: what the first burst left behind is reused, not added to.
    let open_again = burst(&address, token, pid).await;
    let after_second = settled(pid, after_first + grown / 10).await;

    let status = berth.stop();
    assert!(status.success());
    let seen = format!(
        "{before} KiB before, {open} KiB with {CONNECTIONS} streams open, {after_first} KiB after \
         they closed; {open_again} KiB with another {CONNECTIONS}, {after_second} KiB after"
    );
    assert!(grown > 20 * 1024, "the streams should take memory: {seen}");
    // Some of it stays for good (pools and tables that grew once and are reused, as the
    // second burst shows); before, all but a few percent stayed.
    assert!(
        open.saturating_sub(after_first) >= grown / 3,
        "closed streams kept their memory: {seen}"
    );
    assert!(
        after_second <= after_first + grown / 10,
        "memory grew with each burst of streams: {seen}"
    );
}
