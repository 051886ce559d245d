//! Which node runs servers, and how this node reaches it.
//!
//! One node at a time drives the runtime: the active worker, holder of the worker lease.
//! It runs every container and process, so it holds every server's session and output,
//! and every other node goes through it. A node asks the database which node is active
//! (the one that took the lease last and is still heard from); the active node knows it
//! is, and asks nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use berth_application::runtime::{Placement, RemoteEndpoint, RuntimeError};
use berth_domain::catalog::Transport;
use berth_infrastructure::nodes;
use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::PREFIX;

/// This node's view of where servers run.
pub struct NodePlacement {
    here: String,
    pool: Pool,
    token: SecretString,
    client: reqwest::Client,
    /// Whether this node holds the worker lease.
    active: AtomicBool,
}

impl NodePlacement {
    /// The placement as node `here` sees it, presenting `token` to the other nodes, which
    /// it reaches with `client`.
    pub fn new(here: String, pool: Pool, token: SecretString, client: reqwest::Client) -> Self {
        Self {
            here,
            pool,
            token,
            client,
            active: AtomicBool::new(false),
        }
    }

    /// Records whether this node holds the worker lease.
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
    }

    /// Whether this node holds the worker lease.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// The URL of the active worker when it is another node; `None` when this node is
    /// the active worker; an error when no node is.
    pub async fn elsewhere(&self) -> Result<Option<String>, RuntimeError> {
        if self.is_active() {
            return Ok(None);
        }
        let active = nodes::active(&self.pool, Some(&self.here))
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("reading the nodes: {e}")))?;
        match active {
            Some(node) => Ok(Some(node.url)),
            None => Err(RuntimeError::Unavailable(
                "no worker is active: the servers run again once a node with the worker role \
                 takes over"
                    .into(),
            )),
        }
    }

    /// `GET url` of another node, with the node token.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response, RuntimeError> {
        let (name, value) = self.authorization();
        self.client
            .get(url)
            .header(name, value.expose_secret())
            .send()
            .await
            .map_err(|e| {
                RuntimeError::Unavailable(format!(
                    "the active worker does not answer: {}",
                    berth_infrastructure::error::causes(&e)
                ))
            })
    }

    /// The header every request to another node carries.
    fn authorization(&self) -> (String, SecretString) {
        (
            "authorization".into(),
            SecretString::from(format!("Bearer {}", self.token.expose_secret())),
        )
    }
}

#[async_trait]
impl Placement for NodePlacement {
    async fn reach(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<Option<RemoteEndpoint>, RuntimeError> {
        let Some(url) = self.elsewhere().await? else {
            return Ok(None);
        };
        let transport = match transport {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        };
        Ok(Some(RemoteEndpoint {
            url: format!("{url}{PREFIX}/servers/{server_id}/mcp?transport={transport}"),
            headers: vec![self.authorization()],
        }))
    }
}
