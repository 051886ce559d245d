//! Live delivery latency: a command committed through `berth serve`'s HTTP API → its
//! event on every one of 1, 100 and 1,000 subscribers of the SSE stream
//! (`GET /api/v1/events/stream`).
//!
//! Subscribers connect (with the admin key) after the head, a first command is sent and
//! awaited on every stream so all are caught up and live, then the timed commands go
//! one at a time, paced. Each subscriber notes when each event reaches it (the moment
//! its chunk was read); latency is that moment less the moment the command's `202`
//! (its commit) came back, clamped at 0 since an event may arrive before the response;
//! the time from sending the command is reported too. Subscribers and the load run in
//! this process on the same machine as the server, as a client on the same host would.
//!
//! Baseline: the same measurement with one subscriber, in the same run on the same
//! server, so the 100 and 1,000 figures show what fanning out costs; the one-subscriber
//! figure is set beside the command's own round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::ACCEPT;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::report::{Figure, Target};
use crate::scenarios::http::{berth_binary, describe, patch, server_url, BenchApi};
use crate::serve::{BerthServe, ServeOptions};
use crate::stats::Latencies;
use crate::Bench;

const SCENARIO: &str = "live";

/// The pause between timed commands: one at a time, so each event's delivery is
/// measured alone rather than behind a queue of others.
pub(crate) const PACE: Duration = Duration::from_millis(25);

/// The subscriber count the latency target is set at.
const TARGET_SUBSCRIBERS: usize = 100;

/// Subscribers connecting at the same time.
const CONNECTING_AT_ONCE: usize = 64;

/// How long all subscribers get to connect, and to receive an event.
const WAIT: Duration = Duration::from_secs(60);

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let binary = berth_binary(bench)?;
    let db = bench.server.database("live", false).await?;
    let result = async {
        let serve = BerthServe::start(&binary, &db, &ServeOptions::default()).await?;
        let measured = measure(bench, &serve).await;
        let stopped = serve.stop().await;
        measured?;
        stopped.map(drop)
    }
    .await;
    db.remove().await?;
    result
}

/// One round's measurements.
struct Round {
    commit_to_delivered: Latencies,
    sent_to_delivered: Latencies,
    round_trip: Latencies,
}

async fn measure(bench: &Bench<'_>, serve: &BerthServe) -> anyhow::Result<()> {
    bench.report.note(SCENARIO, &describe(serve));
    bench.report.note(
        SCENARIO,
        &format!(
            "{} commands per round, one every {} ms; every subscriber must receive every one",
            bench.scale.live_commands,
            PACE.as_millis()
        ),
    );
    let api = BenchApi::register(serve).await?;
    let server = api.servers(serve, 1).await?[0];
    let commands = Commands::new(serve, server);

    // The baseline runs first; it is also the one-subscriber figure.
    let mut baseline = Some(round(serve, &commands, 1, bench.scale.live_commands).await?);
    let (base_p50, base_p99) = baseline.as_mut().map_or((0.0, 0.0), |b| {
        (
            b.commit_to_delivered.percentile_ms(50.0),
            b.commit_to_delivered.percentile_ms(99.0),
        )
    });
    for &count in &bench.scale.subscribers {
        let reused = if count == 1 { baseline.take() } else { None };
        let mut measured = match reused {
            Some(baseline) => baseline,
            None => round(serve, &commands, count, bench.scale.live_commands).await?,
        };
        let name = format!("{count} subscriber{}", if count == 1 { "" } else { "s" });
        let samples = measured.commit_to_delivered.len() as u64;
        for p in [50.0, 99.0] {
            let value = measured.commit_to_delivered.percentile_ms(p);
            let mut figure = Figure::new(
                SCENARIO,
                format!("{name}: commit→delivered p{p}"),
                "ms",
                value,
                samples,
            );
            figure = if count == 1 {
                figure.against("command round trip", measured.round_trip.percentile_ms(p))
            } else {
                figure.against("1 subscriber", if p == 50.0 { base_p50 } else { base_p99 })
            };
            if p == 99.0 && count == TARGET_SUBSCRIBERS {
                figure = figure.target(Target::AtMost(20.0));
            }
            bench.report.add(figure);
        }
        for p in [50.0, 99.0] {
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("{name}: sent→delivered p{p}"),
                    "ms",
                    measured.sent_to_delivered.percentile_ms(p),
                    samples,
                )
                .against("command round trip", measured.round_trip.percentile_ms(p)),
            );
        }
    }
    Ok(())
}

/// Connects `count` subscribers, makes sure all are live, sends `timed` paced commands
/// and collects when each reached each subscriber.
async fn round(
    serve: &BerthServe,
    commands: &Commands,
    count: usize,
    timed: usize,
) -> anyhow::Result<Round> {
    let (head, _) = commands.send().await?;
    let subscribers = Subscribers::connect(serve, count, head).await?;
    let timed_run = async {
        let (first, _) = commands.send().await?;
        subscribers
            .wait_all(first, WAIT)
            .await
            .context("waiting for every subscriber to be live")?;
        let mut sent = Vec::with_capacity(timed);
        let mut ticks = tokio::time::interval(PACE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..timed {
            ticks.tick().await;
            let at = Instant::now();
            let (position, committed) = commands.send().await?;
            sent.push((position, at, committed));
        }
        let last = sent.last().map_or(first, |s| s.0);
        subscribers
            .wait_all(last, WAIT)
            .await
            .context("waiting for the timed events on every subscriber")?;
        anyhow::Ok(sent)
    }
    .await;
    // Streams are closed whatever happened.
    let received = subscribers.finish().await;
    let sent = timed_run?;

    let by_position: HashMap<i64, (Instant, Instant)> =
        sent.iter().map(|&(p, s, c)| (p, (s, c))).collect();
    let mut result = Round {
        commit_to_delivered: Latencies::new(),
        sent_to_delivered: Latencies::new(),
        round_trip: Latencies::new(),
    };
    for (_, at, committed) in &sent {
        result.round_trip.record(committed.duration_since(*at));
    }
    for subscriber in received {
        let mut got = 0;
        for (position, delivered) in subscriber.deliveries {
            if let Some(&(at, committed)) = by_position.get(&position) {
                got += 1;
                result
                    .commit_to_delivered
                    .record(delivered.saturating_duration_since(committed));
                result
                    .sent_to_delivered
                    .record(delivered.saturating_duration_since(at));
            }
        }
        anyhow::ensure!(
            got == sent.len(),
            "a subscriber received {got} of {} timed events",
            sent.len()
        );
    }
    Ok(result)
}

/// Config changes of one server through the API, each changing something.
pub(crate) struct Commands {
    client: reqwest::Client,
    url: String,
    next: AtomicU64,
}

impl Commands {
    /// Commands for `server`.
    pub(crate) fn new(serve: &BerthServe, server: Uuid) -> Self {
        Self {
            client: serve.client().clone(),
            url: server_url(serve.base_url(), server),
            next: AtomicU64::new(0),
        }
    }

    /// Sends the next one; its position, and when its answer came back.
    pub(crate) async fn send(&self) -> anyhow::Result<(i64, Instant)> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let position = patch(&self.client, &self.url, n).await?;
        Ok((position, Instant::now()))
    }
}

/// What one subscriber received.
pub(crate) struct Received {
    /// Each event's position and when it arrived, in order.
    pub deliveries: Vec<(i64, Instant)>,
    /// Why its stream ended before it was stopped, if it did.
    pub ended: Option<String>,
}

/// SSE subscribers of one `berth serve`, each a task reading its stream.
pub(crate) struct Subscribers {
    tasks: Vec<JoinHandle<Received>>,
    seen: Vec<Arc<AtomicI64>>,
    ended: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Connects `count` subscribers to the stream after position `after` and returns
    /// once every one has its response (from then on the server queues every event
    /// for it).
    pub(crate) async fn connect(
        serve: &BerthServe,
        count: usize,
        after: i64,
    ) -> anyhow::Result<Self> {
        let url = serve.url(&format!("/api/v1/events/stream?after={after}"));
        let (stop, _) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(count.max(1));
        let ended = Arc::new(AtomicUsize::new(0));
        let mut subscribers = Self {
            tasks: Vec::with_capacity(count),
            seen: Vec::with_capacity(count),
            ended: Arc::clone(&ended),
            stop,
        };
        for _ in 0..count {
            let seen = Arc::new(AtomicI64::new(after));
            subscribers.seen.push(Arc::clone(&seen));
            let task = subscribe(
                serve.client().clone(),
                url.clone(),
                Arc::clone(&gate),
                ready_tx.clone(),
                seen,
                Arc::clone(&ended),
                subscribers.stop.subscribe(),
            );
            subscribers.tasks.push(tokio::spawn(task));
        }
        drop(ready_tx);
        let deadline = tokio::time::Instant::now() + WAIT;
        for connected in 0..count {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => {
                    subscribers.finish().await;
                    anyhow::bail!("subscriber {connected} of {count} could not connect: {e}");
                }
                Ok(None) | Err(_) => {
                    subscribers.finish().await;
                    anyhow::bail!(
                        "only {connected} of {count} subscribers connected within {WAIT:?}"
                    );
                }
            }
        }
        Ok(subscribers)
    }

    /// Returns once every subscriber has received the event at `position`.
    pub(crate) async fn wait_all(&self, position: i64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let behind = self
                .seen
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) < position)
                .count();
            if behind == 0 {
                return Ok(());
            }
            let ended = self.ended.load(Ordering::Relaxed);
            anyhow::ensure!(
                ended == 0,
                "{ended} of {} streams ended early ({behind} behind position {position})",
                self.seen.len()
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "{behind} of {} subscribers had not received position {position} after {timeout:?}",
                self.seen.len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Closes every stream and returns what each received.
    pub(crate) async fn finish(self) -> Vec<Received> {
        self.stop.send_replace(true);
        let mut received = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            received.push(task.await.unwrap_or_else(|e| Received {
                deliveries: Vec::new(),
                ended: Some(format!("the subscriber task failed: {e}")),
            }));
        }
        received
    }
}

async fn subscribe(
    client: reqwest::Client,
    url: String,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    seen: Arc<AtomicI64>,
    ended: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut received = Received {
        deliveries: Vec::new(),
        ended: None,
    };
    let permit = gate.acquire_owned().await;
    let connected = tokio::time::timeout(
        WAIT,
        client.get(&url).header(ACCEPT, "text/event-stream").send(),
    )
    .await;
    drop(permit);
    let mut response = match connected {
        Ok(Ok(r)) if r.status().is_success() => r,
        Ok(Ok(r)) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            let _ = ready.send(Err(format!("{status} {body}"))).await;
            received.ended = Some(status.to_string());
            return received;
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(e.to_string())).await;
            received.ended = Some(e.to_string());
            return received;
        }
        Err(_) => {
            let _ = ready.send(Err(format!("no answer within {WAIT:?}"))).await;
            received.ended = Some("no answer".into());
            return received;
        }
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);
    let mut parser = SseParser::default();
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            chunk = response.chunk() => chunk,
        };
        match chunk {
            Ok(Some(bytes)) => {
                let at = Instant::now();
                parser.feed(&bytes, |message| match message {
                    SseMessage::Event(position) => {
                        received.deliveries.push((position, at));
                        seen.store(position, Ordering::Relaxed);
                    }
                    SseMessage::End(kind) => received.ended = Some(format!("event: {kind}")),
                });
            }
            Ok(None) => {
                received
                    .ended
                    .get_or_insert_with(|| "the stream closed".into());
                break;
            }
            Err(e) => {
                received.ended = Some(e.to_string());
                break;
            }
        }
        if received.ended.is_some() {
            break;
        }
    }
    if received.ended.is_some() {
        ended.fetch_add(1, Ordering::Relaxed);
    }
    received
}

/// A message of an SSE stream, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
enum SseMessage {
    /// An event and its `id:` (its position).
    Event(i64),
    /// A named message (`lagged`, `shutdown`, `unavailable`): the stream ends.
    End(String),
}

/// A streaming parser of `text/event-stream`: fed chunks as they come, cut anywhere.
#[derive(Default)]
struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    id: Option<i64>,
    event: Option<String>,
    data: bool,
}

impl SseParser {
    fn feed(&mut self, mut chunk: &[u8], mut on: impl FnMut(SseMessage)) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line(&chunk[..end], &mut on);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..end]);
                self.line(&line, &mut on);
            }
            chunk = &chunk[end + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    fn line(&mut self, line: &[u8], on: &mut impl FnMut(SseMessage)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let (id, event, data) = (self.id.take(), self.event.take(), self.data);
            self.data = false;
            match event.as_deref() {
                None | Some("message") if data => {
                    if let Some(id) = id {
                        on(SseMessage::Event(id));
                    }
                }
                None | Some("message") => {}
                Some(_) => on(SseMessage::End(event.unwrap_or_default())),
            }
            return;
        }
        if line.starts_with(b":") {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"id" => {
                self.id = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => self.data = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseMessage> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, |m| out.push(m));
        }
        out
    }

    #[test]
    fn events_are_found_however_the_stream_is_cut() {
        let stream = b": keep-alive\n\nid: 7\ndata: {\"a\":1}\n\nid: 8\r\ndata: {}\r\n\r\nevent: lagged\nid: 8\ndata: {}\n\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            vec![
                SseMessage::Event(7),
                SseMessage::Event(8),
                SseMessage::End("lagged".into())
            ]
        );
        for cut in 1..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }
}
