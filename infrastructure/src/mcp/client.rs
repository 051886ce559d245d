//! What Berth is to an upstream server: a client named `berth` that answers the server's
//! own requests with "not supported" (the SDK's defaults), and routes the server's
//! progress notifications to whoever made the request they report on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::mpsc;

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

/// How many notifications for tokens nobody routes yet are kept: a server may report
/// progress before the request's route is open.
const UNCLAIMED: usize = 256;

/// The progress tokens of requests in flight, each with where its notifications go.
#[derive(Debug, Clone, Default)]
pub struct ProgressRoutes {
    inner: Arc<Mutex<Routes>>,
}

#[derive(Debug, Default)]
struct Routes {
    routes: HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>,
    unclaimed: VecDeque<ProgressNotificationParam>,
}

impl ProgressRoutes {
    /// Sends `token`'s notifications (those that came already included) to `to` until
    /// the returned route drops.
    pub fn route(
        &self,
        token: ProgressToken,
        to: mpsc::Sender<ProgressNotificationParam>,
    ) -> ProgressRoute {
        let mut inner = self.lock();
        let (early, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut inner.unclaimed)
            .into_iter()
            .partition(|p| p.progress_token == token);
        inner.unclaimed = rest;
        for note in early {
            let _ = to.try_send(note);
        }
        inner.routes.insert(token.clone(), to);
        ProgressRoute {
            routes: self.clone(),
            token,
        }
    }

    fn deliver(&self, params: ProgressNotificationParam) {
        let mut inner = self.lock();
        match inner.routes.get(&params.progress_token) {
            // A full or closed receiver loses this notification and nothing else.
            Some(sender) => {
                let _ = sender.try_send(params);
            }
            None => {
                if inner.unclaimed.len() == UNCLAIMED {
                    inner.unclaimed.pop_front();
                }
                inner.unclaimed.push_back(params);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open route; dropping it stops the routing.
#[derive(Debug)]
pub struct ProgressRoute {
    routes: ProgressRoutes,
    token: ProgressToken,
}

impl Drop for ProgressRoute {
    fn drop(&mut self) {
        self.routes.lock().routes.remove(&self.token);
    }
}
