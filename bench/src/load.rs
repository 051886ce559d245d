//! A closed-loop load generator: `clients` tasks each send one operation, wait for its
//! answer and send the next, until the run's time is up.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{rate, Latencies};

/// What a run did.
#[derive(Debug, Default)]
pub struct Run {
    /// Operations that succeeded.
    pub done: u64,
    /// Operations that failed (after whatever retries the operation makes itself).
    pub failed: u64,
    /// Tries lost to optimistic-concurrency conflicts and made again.
    pub conflicts: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The latency of every successful operation.
    pub latencies: Latencies,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
}

impl Run {
    /// Successful operations per second.
    pub fn per_second(&self) -> f64 {
        rate(self.done, self.elapsed)
    }
}

/// Runs `op(client, n)` from `clients` concurrent clients for `duration`; `n` numbers
/// operations across all clients. An operation answers how many conflicts it retried.
pub async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u32>> + Send + 'static,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let op = Arc::clone(&op);
        let counter = Arc::clone(&counter);
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                match op(client, n).await {
                    Ok(conflicts) => {
                        run.latencies.record(sent.elapsed());
                        run.done += 1;
                        run.conflicts += u64::from(conflicts);
                    }
                    Err(e) => {
                        run.failed += 1;
                        if run.first_error.is_none() {
                            run.first_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for task in tasks {
        match task.await {
            Ok(run) => {
                total.done += run.done;
                total.failed += run.failed;
                total.conflicts += run.conflicts;
                total.latencies.merge(run.latencies);
                if total.first_error.is_none() {
                    total.first_error = run.first_error;
                }
            }
            Err(e) => {
                total.failed += 1;
                total.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_successes_failures_and_conflicts_apart() {
        let run = drive(4, Duration::from_millis(50), |client, n| async move {
            tokio::task::yield_now().await;
            if client == 0 {
                anyhow::bail!("client 0 fails op {n}")
            }
            Ok(1)
        })
        .await;
        assert!(run.done > 0 && run.failed > 0);
        assert_eq!(run.conflicts, run.done);
        assert_eq!(run.latencies.len() as u64, run.done);
        assert!(run.first_error.unwrap().starts_with("client 0 fails"));
    }
}
