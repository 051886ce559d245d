//! The live event stream over real HTTP and PostgreSQL: resuming with `Last-Event-ID`
//! misses and repeats nothing, a hundred clients see the same sequence while a stalled
//! one is cut off without slowing writers, filters and the WebSocket agree with
//! `GET /api/v1/events`, tokens are required, and the delivery latency is measured.

mod api_support;
mod live_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::TestApp;
use live_support::{
    all_events, ids, quantile, stream_client, Endpoint, Received, Rng, SseClient, Workload,
    WsClient,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The tests that measure or load the machine run alone (`write`); the others share
/// (`read`). The feed waits behind the oldest transaction open anywhere in the cluster,
/// so another test's `CREATE DATABASE` would show up in the latency figure.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const WAIT: Duration = Duration::from_secs(20);

/// Reads events until one at `position` arrives, appending them to `into`.
async fn read_through(sse: &mut SseClient, position: i64, into: &mut Vec<Value>) {
    if into.last().and_then(|e| e["position"].as_i64()) == Some(position) {
        return;
    }
    loop {
        match sse.next(WAIT).await {
            Received::Event(event) => {
                let at = event["position"].as_i64();
                into.push(event);
                if at == Some(position) {
                    return;
                }
            }
            other => panic!("the stream ended early: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_with_its_last_id_gets_every_later_event_once_in_order() {
    let _shared = MACHINE.read().await;
    let app = TestApp::spawn().await;
    let endpoint = Endpoint::of(&app);
    let client = stream_client();
    let mut workload = Workload::new(&app).await;
    let mut rng = Rng::seeded();
    let stop = AtomicBool::new(false);

    let writer = async {
        let mut commands = 0;
        while !stop.load(Ordering::SeqCst) {
            workload.step(&app).await;
            commands += 1;
        }
        commands
    };
    let reader = async {
        let mut received = Vec::new();
        let mut last = None;
        for _cut in 0..6 {
            let mut sse = SseClient::open(&client, &endpoint, "", last).await;
            for _ in 0..=rng.below(40) {
                match sse.next(WAIT).await {
                    Received::Event(event) => {
                        last = event["position"].as_i64();
                        received.push(event);
                    }
                    other => panic!("the stream ended early: {other:?}"),
                }
            }
            // Disconnect at this random point, and stay away a little while writers go on.
            drop(sse);
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        }
        stop.store(true, Ordering::SeqCst);
        (received, last)
    };
    let (commands, (mut received, last)) = tokio::join!(writer, reader);

    let expected = all_events(&app, "").await;
    let head = expected.last().and_then(|e| e["position"].as_i64());
    let mut sse = SseClient::open(&client, &endpoint, "", last).await;
    read_through(&mut sse, head.expect("events"), &mut received).await;
    println!(
        "{commands} commands written while reading; {} events received over 7 connections",
        received.len()
    );
    assert_eq!(ids(&received), ids(&expected), "every event once, in order");
    assert_eq!(received, expected, "the same objects as GET /api/v1/events");
}

/// One of many clients: follows the stream until the event at the final position,
/// reconnecting with its last id whenever it is told it lagged.
async fn follow(
    client: reqwest::Client,
    endpoint: Endpoint,
    query: &'static str,
    mut last_position: watch::Receiver<Option<i64>>,
) -> (Vec<String>, usize) {
    let mut received: Vec<String> = Vec::new();
    let mut last = None;
    let mut reconnects = 0;
    let mut sse = SseClient::open(&client, &endpoint, query, Some(0)).await;
    loop {
        let target = *last_position.borrow();
        if target.is_some() && last == target {
            return (received, reconnects);
        }
        tokio::select! {
            got = sse.next(Duration::from_secs(60)) => match got {
                Received::Event(event) => {
                    last = event["position"].as_i64();
                    received.push(event["event_id"].as_str().unwrap_or_default().to_string());
                }
                Received::End(message) => {
                    assert_eq!(message.event.as_deref(), Some("lagged"), "{message:?}");
                    assert_eq!(message.id.as_deref().and_then(|i| i.parse().ok()), last.or(Some(0)));
                    reconnects += 1;
                    sse = SseClient::open(&client, &endpoint, query, last.or(Some(0))).await;
                }
                Received::Closed => panic!("the stream ended without a final message"),
            },
            _ = last_position.changed(), if target.is_none() => {}
        }
    }
}

/// What the hundred clients follow.
const SERVERS_ONLY: &str = "aggregate_type=server";

/// A catalog entry of about 800 kB: 100 config keys with 8000-byte defaults.
fn big_entry(i: usize) -> Value {
    let mut entry = api_support::fixture_entry(&format!("big-{i}"));
    entry["config_schema"] = (0..100)
        .map(|k| {
            serde_json::json!({
                "key": format!("KEY_{k}"),
                "description": "padding",
                "required": false,
                "secret": false,
                "default": "x".repeat(8000),
            })
        })
        .collect();
    entry
}

/// Opens an SSE request on a socket with a tiny receive buffer and never reads it.
async fn stalled_client(endpoint: &Endpoint) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let addr = endpoint.host().parse().expect("an address");
    let mut stream = socket.connect(addr).await.expect("connecting");
    let request = format!(
        "GET /api/v1/events/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\nConnection: close\r\n\r\n",
        endpoint.host(),
        endpoint.token
    );
    stream.write_all(request.as_bytes()).await.expect("sending");
    stream
}

fn print_latencies(label: &str, rtts: &[Duration]) {
    let mut ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    println!(
        "{label}: {} commands, p50 {:.2} ms, p99 {:.2} ms",
        ms.len(),
        quantile(&mut ms, 0.5),
        quantile(&mut ms, 0.99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_see_the_same_sequence_and_a_stalled_one_slows_no_writer() {
    let _alone = MACHINE.write().await;
    let app = TestApp::spawn_with(|config| {
        // Small, so that the stalled client is cut off soon after its socket is full.
        config.live.connection_buffer = 32;
        config.live.stall_timeout = Duration::from_secs(2);
        config.pool_size = 16;
    })
    .await;
    let endpoint = Endpoint::of(&app);
    let mut workload = Workload::new(&app).await;
    let (final_tx, final_rx) = watch::channel(None);
    let client = stream_client();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(follow(
                client.clone(),
                endpoint.clone(),
                SERVERS_ONLY,
                final_rx.clone(),
            ))
        })
        .collect();

    let mut without_stall = Vec::new();
    for _ in 0..150 {
        without_stall.push(workload.step(&app).await.1);
    }
    let mut stalled = stalled_client(&endpoint).await;
    let mut with_stall = Vec::new();
    // Catalog entries of ~800 kB each: enough to fill every buffer between Berth and the
    // stalled client (the kernel's may grow to megabytes). The hundred follow servers
    // only, so they are not made to swallow them too.
    for i in 0..8 {
        let started = Instant::now();
        app.post("/api/v1/catalog", &big_entry(i)).await.expect(201);
        with_stall.push(started.elapsed());
    }
    let mut last = 0;
    for _ in 0..600 {
        let (position, rtt) = workload.step(&app).await;
        with_stall.push(rtt);
        last = position;
    }
    final_tx.send_replace(Some(last));

    let mut sequences = Vec::new();
    for client in clients {
        sequences.push(
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .expect("every client gets to the last event")
                .expect("a client task failed"),
        );
    }
    let expected = ids(&all_events(&app, SERVERS_ONLY).await);
    let mut reconnects = 0;
    for (received, lagged) in sequences {
        assert_eq!(received, expected, "a client saw a different sequence");
        reconnects += lagged;
    }
    print_latencies("command round trip, 100 SSE clients", &without_stall);
    print_latencies(
        "command round trip, 100 SSE clients + 1 stalled",
        &with_stall,
    );
    println!("{reconnects} reconnection(s) after `lagged` among the 100 clients");

    // The stalled client was cut off: its socket holds what fitted, then `lagged`.
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        read.is_ok(),
        "the stalled connection was not closed ({} bytes, lagged: {})",
        bytes.len(),
        text.contains("event: lagged")
    );
    assert!(
        text.contains("event: lagged"),
        "no `lagged` message for the stalled client ({} bytes)",
        bytes.len()
    );
    println!("the stalled client was cut off after {} bytes", bytes.len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_from_command_answer_to_stream_delivery() {
    let _alone = MACHINE.write().await;
    const COMMANDS: usize = 1200;
    let app = TestApp::spawn().await;
    let endpoint = Endpoint::of(&app);
    let mut workload = Workload::new(&app).await;
    let head = app.head().await;
    let arrivals: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let mut sse = SseClient::open(&stream_client(), &endpoint, "", Some(head)).await;
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            for _ in 0..COMMANDS {
                match sse.next(WAIT).await {
                    Received::Event(event) => {
                        let at = Instant::now();
                        let position = event["position"].as_i64().expect("position");
                        arrivals
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(position, at);
                    }
                    other => panic!("the stream ended early: {other:?}"),
                }
            }
        })
    };
    let mut answered = Vec::with_capacity(COMMANDS);
    let mut rtts = Vec::with_capacity(COMMANDS);
    for _ in 0..COMMANDS {
        let (position, rtt) = workload.step(&app).await;
        answered.push((position, Instant::now()));
        rtts.push(rtt);
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("every event arrives")
        .expect("the reader failed");
    let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let mut delivery: Vec<f64> = answered
        .iter()
        .map(|(position, at)| {
            let arrived = arrivals.get(position).expect("each event arrived");
            // Negative when the event reached the client before the command's answer did.
            if arrived >= at {
                arrived.duration_since(*at).as_secs_f64() * 1000.0
            } else {
                -(at.duration_since(*arrived).as_secs_f64() * 1000.0)
            }
        })
        .collect();
    let early = delivery.iter().filter(|ms| **ms < 0.0).count();
    println!(
        "SSE delivery after the command's answer ({} events): p50 {:.2} ms, p99 {:.2} ms ({early} arrived before the answer)",
        delivery.len(),
        quantile(&mut delivery, 0.5),
        quantile(&mut delivery, 0.99)
    );
    print_latencies("baseline: command round trip", &rtts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_clients_see_only_matches_and_the_websocket_sees_what_sse_sees() {
    let _shared = MACHINE.read().await;
    let app = TestApp::spawn_with(|config| {
        config.live.heartbeat = Duration::from_millis(300);
    })
    .await;
    let endpoint = Endpoint::of(&app);
    let client = stream_client();
    let mut workload = Workload::new(&app).await;
    for _ in 0..30 {
        workload.step(&app).await;
    }
    let watched = workload.servers()[3].clone();
    let queries = [
        String::new(),
        "aggregate_type=server&event_type=ServerDisabled".to_string(),
        format!("aggregate_id={watched}"),
        "event_type=CatalogEntryRegistered".to_string(),
        "aggregate_type=nothing".to_string(),
    ];
    // Half the history is there before they connect, half comes live.
    let mut streams = Vec::new();
    for query in &queries {
        streams.push(SseClient::open(&client, &endpoint, query, None).await);
    }
    let mut socket = WsClient::open(&endpoint, "after=0").await;
    let mut watched_socket = WsClient::open(&endpoint, &format!("aggregate_id={watched}")).await;
    for _ in 0..30 {
        workload.step(&app).await;
    }
    app.command(&format!("/api/v1/servers/{watched}/disable"))
        .await
        .expect(202);
    app.command(&format!("/api/v1/servers/{watched}/enable"))
        .await
        .expect(202);

    let mut unfiltered = Vec::new();
    for (query, sse) in queries.iter().zip(streams.iter_mut()) {
        let expected = all_events(&app, query).await;
        let mut received = Vec::new();
        while received.len() < expected.len() {
            match sse.next(WAIT).await {
                Received::Event(event) => received.push(event),
                other => panic!("`{query}`: the stream ended early: {other:?}"),
            }
        }
        assert_eq!(
            received, expected,
            "`{query}` sees exactly what GET /events lists"
        );
        // Nothing else, only heartbeats.
        assert!(
            sse.poll(Duration::from_millis(700)).await.is_none(),
            "`{query}`: an extra event"
        );
        assert!(sse.comments > 0, "`{query}`: no `: keep-alive` heartbeat");
        if query.is_empty() {
            unfiltered = received;
        }
    }
    assert!(unfiltered
        .iter()
        .any(|e| e["aggregate_id"] == watched.as_str()));

    let mut over_ws = Vec::new();
    while over_ws.len() < unfiltered.len() {
        over_ws.push(socket.next(WAIT).await.expect("the socket stays open"));
    }
    assert_eq!(
        over_ws, unfiltered,
        "the WebSocket delivers what SSE delivers"
    );
    let expected_watched = all_events(&app, &format!("aggregate_id={watched}")).await;
    let mut watched_events = Vec::new();
    while watched_events.len() < expected_watched.len() {
        watched_events.push(watched_socket.next(WAIT).await.expect("open"));
    }
    assert_eq!(watched_events, expected_watched);
    // Idle: the server pings.
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.command(&format!("/api/v1/servers/{watched}/disable"))
        .await
        .expect(202);
    let next = watched_socket.next(WAIT).await.expect("open");
    assert_eq!(next["event_type"], "ServerDisabled");
    assert!(watched_socket.pings() > 0, "no ping heartbeat");

    // Resuming over the WebSocket with `after=`.
    let middle = &unfiltered[unfiltered.len() / 2];
    let mut resumed = WsClient::open(&endpoint, &format!("after={}", middle["position"])).await;
    let rest = all_events(&app, "")
        .await
        .split_off(unfiltered.len() / 2 + 1);
    for expected in &rest {
        assert_eq!(&resumed.next(WAIT).await.expect("open"), expected);
    }
    resumed.close().await;

    // Stopping Berth ends every stream with a last word saying where to resume.
    let sse = &mut streams[0];
    // The unfiltered stream also got the last `ServerDisabled`.
    assert!(matches!(sse.next(WAIT).await, Received::Event(_)));
    app.stop().await;
    match sse.next(WAIT).await {
        Received::End(message) => {
            assert_eq!(message.event.as_deref(), Some("shutdown"));
            let data: Value = serde_json::from_str(&message.data).expect("JSON");
            assert_eq!(data["type"], "shutdown");
            assert_eq!(Some(data["last_event_id"].to_string()), message.id);
        }
        other => panic!("expected a shutdown message, got {other:?}"),
    }
    // The unfiltered socket also got the last `ServerDisabled`.
    let last_event = socket.next(WAIT).await.expect("an event");
    assert_eq!(last_event["event_type"], "ServerDisabled");
    let last_word = socket.next(WAIT).await.expect("a last message");
    assert_eq!(last_word["type"], "shutdown");
    assert_eq!(last_word["last_event_id"], last_event["position"]);
    assert!(socket.next(WAIT).await.is_none(), "then the socket closes");
}

#[tokio::test]
async fn streams_need_a_valid_token_and_a_valid_cursor() {
    let _shared = MACHINE.read().await;
    let app = TestApp::spawn().await;
    let endpoint = Endpoint::of(&app);
    for token in [Some(""), Some("berth_wrong")] {
        for path in ["/api/v1/events/stream", "/api/v1/events/ws"] {
            app.send(reqwest::Method::GET, path, None, token, &[])
                .await
                .expect_problem(401);
        }
        let handshake = live_support::ws_request(&endpoint, "", token.filter(|t| !t.is_empty()));
        match tokio_tungstenite::connect_async(handshake).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                assert_eq!(
                    response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok()),
                    Some("application/problem+json")
                );
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                        .expect("a problem document");
                assert_eq!(body["status"], 401);
            }
            other => panic!("the WebSocket opened without a valid token: {other:?}"),
        }
    }
    app.send(
        reqwest::Method::GET,
        "/api/v1/events/stream",
        None,
        None,
        &[("Last-Event-ID", "soon")],
    )
    .await
    .expect_problem(400);
    app.get("/api/v1/events/stream?after=-1")
        .await
        .expect_problem(422);
    app.get("/api/v1/events/stream?afterwards=1")
        .await
        .expect_problem(400);
    app.get("/api/v1/events/ws").await.expect_problem(400);
}
