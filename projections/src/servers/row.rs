//! A server's read-model row and how each event changes it: through the domain's own
//! `Server::apply`. Secrets are kept as their key names only.

use std::collections::{BTreeMap, BTreeSet};

use berth_domain::server::{
    Health, RestartPolicy, SealedSecret, Server, ServerEvent, ServerState, Sharing, Tool,
};
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::codec::{from_json, variant_name};

/// One row of `servers`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerRow {
    pub id: Uuid,
    pub name: String,
    pub catalog_id: Uuid,
    pub catalog_version: i64,
    pub owner: String,
    pub state: ServerState,
    pub enabled: bool,
    pub restart_pending: bool,
    pub delete_pending: bool,
    pub config: BTreeMap<String, String>,
    pub secret_keys: BTreeSet<String>,
    pub health: Health,
    pub tools: Vec<Tool>,
    pub container_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub position: i64,
    pub restart_policy: RestartPolicy,
    pub restart_attempts: u32,
    pub endpoint: Option<String>,
    pub sharing: Sharing,
    pub node: Option<String>,
}

/// Where an event sits in the log, which is all of the stored row a server row keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stamp {
    pub recorded_at: DateTime<Utc>,
    pub sequence: i64,
    pub position: i64,
}

impl From<&StoredEvent> for Stamp {
    fn from(e: &StoredEvent) -> Self {
        Self {
            recorded_at: e.recorded_at,
            sequence: e.sequence,
            position: e.position,
        }
    }
}

/// What an event does to the set of rows.
pub(crate) enum Change {
    /// A new row.
    Create(Box<ServerRow>),
    /// The row is gone.
    Delete,
    /// The row changes in place.
    Update(ServerEvent),
}

/// Splits an event into what it does to the set of rows.
pub(crate) fn change_of(id: Uuid, event: ServerEvent, stored: Stamp) -> Change {
    match event {
        ServerEvent::Created {
            owner,
            catalog_id,
            catalog_version,
            name,
            config,
            secrets,
            restart_policy,
        } => Change::Create(Box::new(ServerRow {
            restart_policy,
            restart_attempts: 0,
            id,
            name,
            catalog_id,
            catalog_version: i64::from(catalog_version),
            owner,
            state: ServerState::default(),
            enabled: true,
            restart_pending: false,
            delete_pending: false,
            config,
            secret_keys: secrets.into_keys().collect(),
            health: Health::default(),
            tools: Vec::new(),
            container_id: None,
            node: None,
            endpoint: None,
            sharing: Sharing::default(),
            last_error: None,
            created_at: stored.recorded_at,
            updated_at: stored.recorded_at,
            version: stored.sequence,
            position: stored.position,
        })),
        ServerEvent::Deleted => Change::Delete,
        other => Change::Update(other),
    }
}

impl ServerRow {
    /// Applies `event` (anything but `Created` and `Deleted`, which add and remove rows)
    /// by folding it through the domain's own `Server::apply`, so the read model cannot
    /// drift from the aggregate's rules; then stamps the row with the event's place.
    pub(crate) fn apply(&mut self, event: ServerEvent, stored: Stamp) {
        if matches!(event, ServerEvent::Created { .. } | ServerEvent::Deleted) {
            return;
        }
        let mut server = self.to_domain();
        server.apply(event);
        self.absorb(server);
        self.updated_at = stored.recorded_at;
        self.version = stored.sequence;
        self.position = stored.position;
    }

    /// The aggregate state this row records. The read model keeps secret names only, so
    /// secrets come back as empty placeholders: applying an event never reads a sealed
    /// value, it only replaces the set.
    fn to_domain(&self) -> Server {
        let placeholder = || SealedSecret {
            key_id: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        };
        Server {
            created: true,
            deleted: false,
            owner: self.owner.clone(),
            catalog_id: Some(self.catalog_id),
            catalog_version: u32::try_from(self.catalog_version).unwrap_or_default(),
            name: self.name.clone(),
            config: self.config.clone(),
            secrets: self
                .secret_keys
                .iter()
                .map(|k| (k.clone(), placeholder()))
                .collect(),
            state: self.state,
            enabled: self.enabled,
            container_id: self.container_id.clone(),
            last_error: self.last_error.clone(),
            restart_pending: self.restart_pending,
            delete_pending: self.delete_pending,
            health: self.health,
            tools: self.tools.clone(),
            restart_policy: self.restart_policy,
            restart_attempts: self.restart_attempts,
            endpoint: self.endpoint.clone(),
            sharing: self.sharing.clone(),
            node: self.node.clone(),
        }
    }

    fn absorb(&mut self, server: Server) {
        self.owner = server.owner;
        self.catalog_version = i64::from(server.catalog_version);
        self.name = server.name;
        self.config = server.config;
        self.secret_keys = server.secrets.into_keys().collect();
        self.state = server.state;
        self.enabled = server.enabled;
        self.container_id = server.container_id;
        self.last_error = server.last_error;
        self.restart_pending = server.restart_pending;
        self.delete_pending = server.delete_pending;
        self.health = server.health;
        self.tools = server.tools;
        self.restart_policy = server.restart_policy;
        self.restart_attempts = server.restart_attempts;
        self.endpoint = server.endpoint;
        self.sharing = server.sharing;
        self.node = server.node;
    }

    /// Reads a row selected with [`COLUMNS`].
    pub(crate) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let state: String = row.try_get("state")?;
        let health: String = row.try_get("health")?;
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            catalog_id: row.try_get("catalog_id")?,
            catalog_version: row.try_get("catalog_version")?,
            owner: row.try_get("owner")?,
            state: ServerState::parse(&state)
                .ok_or_else(|| StoreError::Malformed(format!("server state `{state}`")))?,
            enabled: row.try_get("enabled")?,
            restart_pending: row.try_get("restart_pending")?,
            delete_pending: row.try_get("delete_pending")?,
            config: from_json(row.try_get("config")?)?,
            secret_keys: from_json(row.try_get("secret_keys")?)?,
            health: from_json(serde_json::Value::String(health))?,
            tools: from_json(row.try_get("tools")?)?,
            container_id: row.try_get("container_id")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
            position: row.try_get("position")?,
            restart_policy: from_json(row.try_get("restart_policy")?)?,
            restart_attempts: u32::try_from(row.try_get::<_, i32>("restart_attempts")?)
                .unwrap_or_default(),
            endpoint: row.try_get("endpoint")?,
            sharing: from_json(row.try_get("sharing")?)?,
            node: row.try_get("node")?,
        })
    }

    /// The health as stored and shown (`unknown`, `healthy`, `unhealthy`).
    pub(crate) fn health_name(&self) -> String {
        variant_name(&self.health)
    }
}

/// Every column of `servers`, in table order.
pub(crate) const COLUMNS: &str = "id, name, catalog_id, catalog_version, owner, state, enabled, \
     restart_pending, delete_pending, config, secret_keys, health, tools, container_id, \
     last_error, created_at, updated_at, version, position, restart_policy, restart_attempts, \
     endpoint, sharing, node";

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(sequence: i64) -> Stamp {
        Stamp {
            position: sequence * 10,
            sequence,
            recorded_at: DateTime::<Utc>::from_timestamp(1_700_000_000 + sequence, 0)
                .unwrap_or_default(),
        }
    }

    fn sealed() -> SealedSecret {
        SealedSecret {
            key_id: "k1".into(),
            nonce: "bm9uY2U=".into(),
            ciphertext: "Y2lwaGVy".into(),
        }
    }

    /// Folding the same events into the domain aggregate and into the row agrees on every
    /// column the row keeps.
    #[test]
    fn the_row_follows_the_aggregate() {
        use ServerEvent as E;
        let events = vec![
            E::Created {
                owner: "user:ann".into(),
                catalog_id: Uuid::from_u128(7),
                catalog_version: 3,
                name: "gh".into(),
                config: BTreeMap::from([("ORG".into(), "acme".into())]),
                secrets: BTreeMap::from([("TOKEN".into(), sealed())]),
                restart_policy: RestartPolicy::OnFailure { max_retries: 2 },
            },
            E::StartRequested,
            E::Failed {
                reason: "boom".into(),
            },
            E::RestartedAfterFailure { attempt: 1 },
            E::RestartPolicyChanged {
                restart_policy: RestartPolicy::Never,
            },
            E::ProvisioningBegan,
            E::ContainerCreated {
                container_id: "c1".into(),
                node: Some("n1".into()),
            },
            E::Running,
            E::HealthChanged {
                health: Health::Healthy,
            },
            E::ToolsDiscovered {
                tools: vec![Tool {
                    name: "search".into(),
                    description: None,
                    input_schema: None,
                }],
            },
            E::RestartRequested,
            E::Stopped,
            E::StartRequested,
            E::ProvisioningBegan,
            E::Failed {
                reason: "no image".into(),
            },
            E::ConfigUpdated {
                config: BTreeMap::new(),
                secrets: BTreeMap::from([("TOKEN".into(), sealed()), ("KEY".into(), sealed())]),
                changed_keys: vec!["config.ORG".into(), "secrets.KEY".into()],
            },
            E::Disabled,
            E::Enabled,
            E::StartRequested,
            E::DeletionRequested,
        ];
        let mut server = Server::default();
        let mut row: Option<ServerRow> = None;
        for (i, event) in events.into_iter().enumerate() {
            let at = stored(i64::try_from(i).unwrap_or_default() + 1);
            server.apply(event.clone());
            match change_of(Uuid::nil(), event, at) {
                Change::Create(r) => row = Some(*r),
                Change::Delete => row = None,
                Change::Update(e) => row.as_mut().expect("created first").apply(e, at),
            }
            let r = row.as_ref().expect("created first");
            assert_eq!(r.name, server.name);
            assert_eq!(Some(r.catalog_id), server.catalog_id);
            assert_eq!(r.owner, server.owner);
            assert_eq!(r.state, server.state);
            assert_eq!(r.enabled, server.enabled);
            assert_eq!(r.restart_pending, server.restart_pending);
            assert_eq!(r.delete_pending, server.delete_pending);
            assert_eq!(r.restart_policy, server.restart_policy);
            assert_eq!(r.restart_attempts, server.restart_attempts);
            assert_eq!(r.config, server.config);
            assert!(r.secret_keys.iter().eq(server.secrets.keys()));
            assert_eq!(r.health, server.health);
            assert_eq!(r.tools, server.tools);
            assert_eq!(r.container_id, server.container_id);
            assert_eq!(r.last_error, server.last_error);
            assert_eq!(r.version, at.sequence);
            assert_eq!(r.updated_at, at.recorded_at);
        }
    }
}
