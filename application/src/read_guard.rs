//! Facts a command was decided on that live in another aggregate's stream, confirmed by
//! the append itself.
//!
//! A config change is checked against its server's catalog entry, which this process
//! keeps cached. Reading the entry's stream before every command would cost a query
//! each; instead the command names the entry's stream and the sequence it saw, and the
//! event repository refuses the append if that stream has moved on since
//! ([`StaleRead`]). The command is then decided again on the stored state.
//!
//! The check is made by the append's opening query, inside its transaction, and takes no
//! lock: a change to the guarded stream committed after that query (or written by the
//! same group statement) is not seen. That is the window a read before the command had,
//! only narrower; a guard is for facts that change rarely (an entry removed), not a lock.
//!
//! The guards travel through this task-local, which the caller opens around the command
//! ([`guarded`]) and the event repository reads when it persists ([`current`]).

use std::future::Future;

tokio::task_local! {
    static GUARDS: Vec<StreamAt>;
}

/// A stream as a command saw it: its last sequence then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAt {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The last sequence seen (0: the stream did not exist).
    pub sequence: usize,
}

/// A stream a command was decided on moved on before its events were stored: nothing
/// was stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{aggregate_type} {aggregate_id} changed after it was read (at sequence {sequence})")]
pub struct StaleRead {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The sequence the command saw.
    pub sequence: usize,
}

/// Runs `fut` (a command) so that its append is refused unless every stream of `guards`
/// is still at the sequence given.
pub async fn guarded<F: Future>(guards: Vec<StreamAt>, fut: F) -> F::Output {
    GUARDS.scope(guards, fut).await
}

/// The guards of the command running in this task (none outside [`guarded`]).
pub fn current() -> Vec<StreamAt> {
    GUARDS.try_with(Clone::clone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_guards_are_the_running_commands_only() {
        let at = StreamAt {
            aggregate_type: "catalog_entry".into(),
            aggregate_id: "c".into(),
            sequence: 3,
        };
        assert!(current().is_empty());
        let inside = guarded(vec![at.clone()], async { current() }).await;
        assert_eq!(inside, vec![at]);
        assert!(current().is_empty());
    }
}
