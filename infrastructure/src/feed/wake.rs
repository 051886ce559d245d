//! When a consumer of the feed looks again: woken when events are appended (`LISTEN
//! berth_events`), soon when an event is held back behind an open transaction, and at
//! the latest after the poll interval.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use deadpool_postgres::Pool;

use crate::db::Database;
use crate::StoreError;

/// The channel the append trigger notifies.
pub const CHANNEL: &str = "berth_events";

/// A dedicated `LISTEN` connection. Notifications only shorten waits: a lost one (or a
/// dropped connection) costs at most one poll interval, never an event.
pub struct EventNotifier {
    notify: Arc<Notify>,
    // Held so the LISTEN session lives as long as the notifier.
    _client: tokio_postgres::Client,
}

impl EventNotifier {
    /// Opens the connection and starts listening.
    pub async fn listen(db: &Database) -> Result<Self, StoreError> {
        let (client, mut connection) = db.config().connect(NoTls).await?;
        let notify = Arc::new(Notify::new());
        let wake = notify.clone();
        tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "event notification connection failed; falling back to polling");
                        break;
                    }
                    None => break,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(Self {
            notify,
            _client: client,
        })
    }

    /// Waits until an append is announced or `timeout` passes; `true` if announced.
    pub async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.notify.notified())
            .await
            .is_ok()
    }
}

/// Whether any stored event is not readable yet, its transaction being at or above the
/// oldest one still open in the cluster.
const HELD_BACK: &str = "SELECT EXISTS (SELECT 1 FROM events \
     WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))";

/// The first pause before looking again for events held back; it doubles up to the poll
/// interval while they stay held back.
const FIRST_HELD_BACK_RETRY: Duration = Duration::from_millis(5);

/// The wait between a consumer's passes over the feed: until an append is announced,
/// or the poll interval passes.
///
/// An event held back behind an older open transaction is announced once, when it is
/// appended, and becomes readable only when that transaction ends, unannounced. A
/// consumer that delivers to people as they watch (the fan-out) looks again soon while
/// any event is held back (5 ms, doubling up to the poll interval). The others wait for
/// the next announcement: under a steady write load that comes within milliseconds, and
/// looking more often only adds transactions to the load.
pub(crate) struct Wakeup {
    notifier: EventNotifier,
    /// Set for a consumer that looks again soon while events are held back.
    held_back: Option<HeldBack>,
    poll_interval: Duration,
}

struct HeldBack {
    pool: Pool,
    retry: Duration,
}

impl Wakeup {
    /// Listens for appends on `db`.
    pub(crate) async fn listen(db: &Database, poll_interval: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            notifier: EventNotifier::listen(db).await?,
            held_back: None,
            poll_interval,
        })
    }

    /// Also looks again soon while events are held back, asking through `pool`.
    pub(crate) fn soon_while_held_back(mut self, pool: Pool) -> Self {
        self.held_back = Some(HeldBack {
            pool,
            retry: FIRST_HELD_BACK_RETRY,
        });
        self
    }

    /// Waits until it is time to look at the feed again, after a pass that read
    /// everything readable.
    pub(crate) async fn wait(&mut self) {
        let poll_interval = self.poll_interval;
        let wait = match &mut self.held_back {
            Some(held) if held.any().await.unwrap_or(false) => {
                let wait = held.retry;
                held.retry = (held.retry * 2).min(poll_interval);
                wait
            }
            Some(held) => {
                held.retry = FIRST_HELD_BACK_RETRY;
                poll_interval
            }
            None => poll_interval,
        };
        self.notifier.wait(wait).await;
    }
}

impl HeldBack {
    async fn any(&self) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(HELD_BACK).await?;
        Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
    }
}
