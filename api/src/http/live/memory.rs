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

/// Looks after a release when memory is given back once more: a stream stops counting as
/// open when its subscription ends, but its connection's buffers are freed a little later,
/// as the server tears the connection down, and a release that ran first missed them.
const RELEASE_AGAIN_AFTER: u32 = 3;

/// Starts the watcher; it ends when `shutdown` turns true.
pub fn spawn_release_after_closing(
    fanout: EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut again_in: Option<u32> = None;
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
                again_in = Some(RELEASE_AGAIN_AFTER);
            } else if let Some(ticks_left) = again_in {
                if ticks_left <= 1 {
                    let released = berth_infrastructure::memory::release_free_memory();
                    tracing::debug!(open, released, "gave the closed connections' memory back");
                    again_in = None;
                } else {
                    again_in = Some(ticks_left - 1);
                }
            }
        }
    })
}
