//! What Berth is to an upstream server: a client named `berth` that answers the server's
//! own requests with "not supported" (the SDK's defaults), and routes the server's
//! progress notifications to whoever made the request they report on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::mpsc;

/// How many progress notifications may wait for a slow receiver before more are
/// dropped: progress is advice, never worth holding the upstream connection for.
const PROGRESS_BACKLOG: usize = 64;

/// The client handler of every upstream session.
#[derive(Debug, Clone, Default)]
pub struct UpstreamClient {
    progress: ProgressRoutes,
}

impl UpstreamClient {
    /// Where this session's progress notifications go.
    pub fn progress(&self) -> &ProgressRoutes {
        &self.progress
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("berth", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.deliver(params);
    }
}

/// Progress tokens Berth gave upstream requests, each with the receiver of its
/// notifications. A token is Berth's own (never a client's, which could collide with
/// another client's on the shared connection); the receiver puts the client's back.
#[derive(Debug, Clone, Default)]
pub struct ProgressRoutes {
    routes: Arc<Mutex<HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>>>,
}

impl ProgressRoutes {
    /// Routes `token`'s notifications to the returned receiver until the guard drops.
    pub fn open(
        &self,
        token: ProgressToken,
    ) -> (ProgressRoute, mpsc::Receiver<ProgressNotificationParam>) {
        let (sender, receiver) = mpsc::channel(PROGRESS_BACKLOG);
        self.lock().insert(token.clone(), sender);
        (
            ProgressRoute {
                routes: self.clone(),
                token,
            },
            receiver,
        )
    }

    fn deliver(&self, params: ProgressNotificationParam) {
        if let Some(sender) = self.lock().get(&params.progress_token) {
            // A full or closed receiver loses this notification and nothing else.
            let _ = sender.try_send(params);
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>>
    {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open route; dropping it stops the routing.
#[derive(Debug)]
pub struct ProgressRoute {
    routes: ProgressRoutes,
    token: ProgressToken,
}

impl ProgressRoute {
    /// The token to send upstream.
    pub fn token(&self) -> &ProgressToken {
        &self.token
    }
}

impl Drop for ProgressRoute {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}
