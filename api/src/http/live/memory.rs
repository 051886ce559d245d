//! Giving back the memory of live streams that closed.
//!
//! Each open stream holds buffers (its event queue, the connection's); thousands of them
//! take tens of megabytes, spread over the allocator's per-thread arenas. When they
//! close, glibc keeps the freed pages in those arenas rather than returning them, so a
//! burst of connections would raise Berth's memory for good. A watcher notices when
//! many streams have closed since the last release and asks the allocator to return its
//! free pages.

use std::time::Duration;

use berth_infrastructure::feed::fanout::EventFanout;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the number of open streams is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Streams that must have closed since the peak before memory is given back: below
/// this, what is freed is not worth a walk of the heap.
const CLOSED_WORTH_RELEASING: usize = 64;

/// Starts the watcher; it ends when `shutdown` turns true.
pub fn spawn_release_after_closing(
    fanout: EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut ticks = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let open = fanout.receiver_count();
            peak = peak.max(open);
            if peak >= open + CLOSED_WORTH_RELEASING {
                let released = berth_infrastructure::memory::release_free_memory();
                tracing::debug!(open, peak, released, "gave freed stream memory back");
                peak = open;
            }
        }
    })
}
