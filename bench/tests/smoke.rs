//! The suite's smoke run: every scenario at its smallest scale, on the test server
//! (`DATABASE_URL`, as `tests/run.sh` sets it, or a throwaway cluster). It checks that
//! each scenario measures what it says and pairs it with its baseline; it asserts
//! nothing about speed, which a shared machine cannot promise.

use std::path::PathBuf;
use std::process::Command;

use berth_bench::{Bench, BenchServer, Report, Scale, SCENARIOS};

/// The `berth` binary of this build, beside the test's profile directory. It is built
/// (a no-op when it is current) because `cargo test -p berth-bench` alone would leave an
/// older one there, which could not even migrate this tree's database.
fn berth_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in <target>/<profile>/deps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "berth-api", "--bin", "berth"]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build for berth");
    assert!(status.success(), "building the berth binary failed");
    profile_dir.join("berth")
}

fn docker_required() -> bool {
    std::env::var("BERTH_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reports_figures_beside_their_baselines() {
    let url = std::env::var("DATABASE_URL").ok();
    let server = BenchServer::start(url.as_deref())
        .await
        .expect("a PostgreSQL server for the bench");
    let report = Report::new(false);
    let scale = Scale::quick();
    let bench = Bench {
        server: &server,
        report: &report,
        scale: &scale,
        berth_binary: Some(berth_binary()),
    };
    let failed = berth_bench::run(&bench, &[]).await;
    server.stop().await.expect("stopping the bench server");
    let figures = report.figures();
    let notes = report.notes();
    assert!(
        failed.is_empty(),
        "failed scenarios: {failed:?}; notes: {notes:#?}"
    );

    for scenario in SCENARIOS {
        let mine: Vec<_> = figures.iter().filter(|f| f.scenario == scenario).collect();
        let skipped = notes
            .iter()
            .any(|(s, text)| s == scenario && text.starts_with("skipped"));
        if scenario == "runtime" && skipped && !docker_required() {
            continue;
        }
        assert!(
            !mine.is_empty(),
            "scenario {scenario} reported no figure; notes: {notes:#?}"
        );
        assert!(
            mine.iter().any(|f| f.baseline.is_some()),
            "scenario {scenario} has no figure with a baseline"
        );
        for f in mine {
            assert!(
                f.value.is_finite() && f.value >= 0.0 && f.samples > 0,
                "{scenario}: {} = {} from {} samples",
                f.name,
                f.value,
                f.samples
            );
            if let Some(baseline) = &f.baseline {
                assert!(
                    baseline.value.is_finite() && baseline.value >= 0.0,
                    "{scenario}: baseline of {} is {}",
                    f.name,
                    baseline.value
                );
            }
        }
    }

    // The JSON lines are what programs read: one parseable object per figure.
    let lines = report.json_lines();
    assert_eq!(lines.lines().count(), figures.len());
    for line in lines.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(parsed["scenario"].is_string() && parsed["value"].is_number());
    }
}
