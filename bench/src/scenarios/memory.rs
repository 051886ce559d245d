//! Resident memory of `berth serve` (read from `/proc/PID/status`): idle once started
//! and settled, under a 16-client HTTP command load, and with 1,000 SSE subscribers
//! connected while events flow to them. Each loaded figure is the process's peak
//! (VmHWM) beside its own idle RSS measured in the same run, so the ratio is the
//! growth; the subscriber figures come from a second, fresh process, so the command
//! load's peak does not hide in them.

use std::time::{Duration, Instant};

use crate::report::{Figure, Target};
use crate::scenarios::http::{berth_binary, checked, describe, BenchApi};
use crate::scenarios::live::{Commands, Subscribers, PACE};
use crate::serve::{BerthServe, ServeOptions};
use crate::Bench;

const SCENARIO: &str = "memory";

/// How long a started server is left alone before its idle size is read.
const SETTLE: Duration = Duration::from_secs(3);

/// Clients of the command load.
const LOAD_CLIENTS: usize = 16;

/// How long the subscribers get to receive every event.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let binary = berth_binary(bench)?;
    for (name, phase) in [
        ("memory_load", Phase::Load),
        ("memory_live", Phase::Subscribers),
    ] {
        let db = bench.server.database(name, false).await?;
        let result = async {
            let serve = BerthServe::start(&binary, &db, &ServeOptions::default()).await?;
            let measured = measure(bench, &serve, phase).await;
            let stopped = serve.stop().await;
            measured?;
            stopped.map(drop)
        }
        .await;
        db.remove().await?;
        result?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Idle, then the command load.
    Load,
    /// Idle, then subscribers with events flowing.
    Subscribers,
}

async fn measure(bench: &Bench<'_>, serve: &BerthServe, phase: Phase) -> anyhow::Result<()> {
    tokio::time::sleep(SETTLE).await;
    let idle = mb(serve.rss_kb()?);
    let idle_peak = mb(serve.peak_rss_kb()?);
    let idle_label = "idle RSS, same process";
    match phase {
        Phase::Load => {
            bench.report.note(SCENARIO, &describe(serve));
            bench.report.add(
                Figure::new(SCENARIO, "idle (started, settled): RSS", "MB", idle, 1)
                    .target(Target::AtMost(60.0)),
            );
            bench.report.add(
                Figure::new(SCENARIO, "idle: peak RSS since start", "MB", idle_peak, 1)
                    .against(idle_label, idle),
            );
            let api = BenchApi::register(serve).await?;
            let servers = api.servers(serve, LOAD_CLIENTS).await?;
            let run = checked(
                api.load(serve, LOAD_CLIENTS, bench.scale.command_run, servers)
                    .await,
            )?;
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("{LOAD_CLIENTS}-client HTTP command load: peak RSS"),
                    "MB",
                    mb(serve.peak_rss_kb()?),
                    run.done,
                )
                .against(idle_label, idle),
            );
        }
        Phase::Subscribers => {
            let count = bench.scale.subscribers.iter().copied().max().unwrap_or(1);
            let api = BenchApi::register(serve).await?;
            let server = api.servers(serve, 1).await?[0];
            let commands = Commands::new(serve, server);
            let (head, _) = commands.send().await?;
            let subscribers = Subscribers::connect(serve, count, head).await?;
            let flowed = flow(&commands, &subscribers, bench.scale.command_run).await;
            let (connected, peak) = (serve.rss_kb(), serve.peak_rss_kb());
            subscribers.finish().await;
            let events = flowed?;
            let (connected, peak) = (mb(connected?), mb(peak?));
            bench.report.note(
                SCENARIO,
                &format!(
                    "{count} subscribers: {events} events sent one every {} ms and received by all",
                    PACE.as_millis()
                ),
            );
            let mut figure = Figure::new(
                SCENARIO,
                format!("{count} subscribers, events flowing: peak RSS"),
                "MB",
                peak,
                events,
            )
            .against(idle_label, idle);
            if count >= 1000 {
                figure = figure.target(Target::AtMost(250.0));
            }
            bench.report.add(figure);
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("{count} subscribers connected: RSS"),
                    "MB",
                    connected,
                    events,
                )
                .against(idle_label, idle),
            );
        }
    }
    Ok(())
}

/// Sends paced commands for `duration` and waits until every subscriber has them all;
/// how many were sent.
async fn flow(
    commands: &Commands,
    subscribers: &Subscribers,
    duration: Duration,
) -> anyhow::Result<u64> {
    let end = Instant::now() + duration;
    let mut ticks = tokio::time::interval(PACE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    let mut sent = 0;
    while Instant::now() < end {
        ticks.tick().await;
        last = Some(commands.send().await?.0);
        sent += 1;
    }
    if let Some(last) = last {
        subscribers.wait_all(last, DELIVERY_WAIT).await?;
    }
    Ok(sent)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}
