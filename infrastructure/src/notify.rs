//! Wakes subscribers when events are appended (`LISTEN berth_events`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

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
