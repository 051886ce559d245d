//! The global position of what a command wrote.
//!
//! `CqrsFramework::execute` answers only `Ok(())`, but every write response must carry
//! the global position of its last event. The event repository reports the positions it
//! wrote through this task-local, which the command bus opens around each execution.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static LAST_POSITION: Cell<Option<i64>>;
}

/// What a committed command wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Global position of the last event written; `None` when the command decided
    /// that nothing needed to change.
    pub position: Option<i64>,
}

/// Called by the event repository after a commit with the highest position it wrote.
/// Outside a command (e.g. in tests driving the repository directly) it does nothing.
pub fn record_position(position: i64) {
    let _ = LAST_POSITION.try_with(|p| p.set(Some(p.get().map_or(position, |q| q.max(position)))));
}

/// Runs `fut` and returns its output with the highest position recorded while it ran.
pub async fn capture<F: Future>(fut: F) -> (F::Output, Option<i64>) {
    LAST_POSITION
        .scope(Cell::new(None), async move {
            let out = fut.await;
            (out, LAST_POSITION.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_keeps_the_highest_position_of_its_own_task_only() {
        record_position(99);
        let ((), pos) = capture(async {
            record_position(5);
            record_position(3);
        })
        .await;
        assert_eq!(pos, Some(5));
        let ((), none) = capture(async {}).await;
        assert_eq!(none, None);
    }
}
