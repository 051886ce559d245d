//! One-line, human summaries of events for the audit trail. They name servers and catalog
//! entries by their last known name and never include config values or secrets.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use berth_domain::bulk::{BulkEvent, BulkOperation};
use berth_domain::catalog::{CatalogEntry, CatalogEvent};
use berth_domain::keyring::KeyRingEvent;
use berth_domain::server::{RestartPolicy, Server, ServerEvent};
use berth_domain::tool_call::ToolCallEvent;
use berth_domain::user::{User, UserEvent};
use berth_infrastructure::feed::StoredEvent;
use cqrs_es::Aggregate;

use crate::codec::variant_name;

/// A server or catalog entry, as `(target_type, target_id)`.
pub(crate) type Target = (String, String);

/// The targets a batch names, borrowed from its events where they can be.
pub(crate) type Targets<'a> = BTreeSet<(Cow<'a, str>, Cow<'a, str>)>;

/// An event decoded as what its aggregate says it is, when Berth knows the aggregate.
pub(crate) enum Decoded {
    /// A server event.
    Server(ServerEvent),
    /// A catalog event.
    Catalog(CatalogEvent),
    /// A bulk operation event.
    Bulk(BulkEvent),
    /// A user (identity) event.
    User(UserEvent),
    /// A master key rotation.
    KeyRing(KeyRingEvent),
    /// A tool call through the gateway.
    ToolCall(ToolCallEvent),
    /// Another aggregate's event (or one that did not decode): summarised generically.
    Other,
}

/// The names known so far, and those this batch set.
#[derive(Default)]
pub(crate) struct Names {
    // By target type, then id: looked up for every event without building a key.
    known: HashMap<String, HashMap<String, String>>,
    changed: HashMap<Target, String>,
}

const MAX_REASON_CHARS: usize = 200;
const MAX_LISTED_TOOLS: usize = 10;

impl Names {
    /// Starts from names already stored.
    pub(crate) fn new(known: impl IntoIterator<Item = (Target, String)>) -> Self {
        let mut names = Self::default();
        for ((target_type, id), name) in known {
            names.known.entry(target_type).or_default().insert(id, name);
        }
        names
    }

    /// The names this batch recorded, to be stored.
    pub(crate) fn into_changed(self) -> HashMap<Target, String> {
        self.changed
    }

    fn set(&mut self, target_type: &str, id: &str, name: &str) {
        self.known
            .entry(target_type.to_string())
            .or_default()
            .insert(id.to_string(), name.to_string());
        self.changed
            .insert((target_type.to_string(), id.to_string()), name.to_string());
    }

    fn get(&self, target_type: &str, id: &str) -> Option<&String> {
        self.known.get(target_type)?.get(id)
    }

    /// `server "github-prod"`, or `server 0192ab34…` while the name is unknown.
    fn label(&self, target_type: &str, id: &str) -> String {
        let noun = if target_type == CatalogEntry::TYPE {
            "catalog entry"
        } else {
            target_type
        };
        match self.get(target_type, id) {
            Some(name) => format!("{noun} {name:?}"),
            None => format!("{noun} {}", shorten(id, 8)),
        }
    }
}

/// Adds to `targets` those whose names summarising `event` needs.
pub(crate) fn targets_of<'a>(event: &'a StoredEvent, decoded: &Decoded, targets: &mut Targets<'a>) {
    let own = || {
        (
            Cow::Borrowed(event.aggregate_type.as_str()),
            Cow::Borrowed(event.aggregate_id.as_str()),
        )
    };
    match decoded {
        Decoded::Server(ServerEvent::Created { catalog_id, .. }) => {
            targets.insert(own());
            targets.insert((
                Cow::Borrowed(CatalogEntry::TYPE),
                Cow::Owned(catalog_id.to_string()),
            ));
        }
        Decoded::Bulk(
            BulkEvent::TargetSucceeded { server_id } | BulkEvent::TargetFailed { server_id, .. },
        ) => {
            targets.insert(own());
            targets.insert((
                Cow::Borrowed(Server::TYPE),
                Cow::Owned(server_id.to_string()),
            ));
        }
        Decoded::Server(_)
        | Decoded::Catalog(_)
        | Decoded::Bulk(_)
        | Decoded::User(_)
        | Decoded::KeyRing(_)
        | Decoded::ToolCall(_) => {
            targets.insert(own());
        }
        Decoded::Other => {}
    }
}

/// The summary of `event`, recording in `names` any name it introduces or changes.
pub(crate) fn summarize(event: &StoredEvent, decoded: &Decoded, names: &mut Names) -> String {
    match decoded {
        Decoded::Server(e) => server(&event.aggregate_id, e, names),
        Decoded::Catalog(e) => catalog(&event.aggregate_id, e, names),
        Decoded::Bulk(e) => bulk(&event.aggregate_id, e, names),
        Decoded::User(e) => user(&event.aggregate_id, e, names),
        Decoded::KeyRing(KeyRingEvent::MasterKeyRotated {
            master_key_id,
            data_keys,
        }) => {
            format!("rotated the master key to {master_key_id}, re-wrapping {data_keys} data keys")
        }
        Decoded::ToolCall(ToolCallEvent::Called(call)) => {
            let how = match &call.error_class {
                Some(class) => format!("{}: {class}", call.outcome.as_str()),
                None => call.outcome.as_str().to_owned(),
            };
            format!(
                "called tool \"{}\" of server \"{}\" ({how}, {:.1} ms)",
                call.tool,
                call.server_name,
                call.duration_us as f64 / 1000.0
            )
        }
        Decoded::Other => format!(
            "{} on {} {}",
            event.event_type,
            event.aggregate_type,
            shorten(&event.aggregate_id, 8)
        ),
    }
}

fn server(id: &str, event: &ServerEvent, names: &mut Names) -> String {
    use ServerEvent as E;
    if let E::Created { name, .. } = event {
        names.set(Server::TYPE, id, name);
    }
    let s = names.label(Server::TYPE, id);
    match event {
        E::Created { catalog_id, .. } => format!(
            "created {s} from {}",
            names.label(CatalogEntry::TYPE, &catalog_id.to_string())
        ),
        E::ConfigUpdated { changed_keys, .. } => {
            format!(
                "changed the configuration of {s}: {}",
                changed_keys.join(", ")
            )
        }
        E::Upgraded {
            from_version,
            catalog_version,
        } => format!("moved {s} from version {from_version} to version {catalog_version} of its catalog entry"),
        E::StartRequested => format!("requested start of {s}"),
        E::RestartPolicyChanged { restart_policy } => match restart_policy {
            RestartPolicy::Never => format!("set {s} never to restart after a failure"),
            RestartPolicy::OnFailure { max_retries } => {
                format!("set {s} to restart after a failure, at most {max_retries} times in a row")
            }
        },
        E::RestartedAfterFailure { attempt } => {
            format!("restarted {s} after a failure (attempt {attempt})")
        }
        E::Relaunched => format!("started {s} again: its process ended with the Berth that ran it"),
        E::ProvisioningBegan => format!("began provisioning {s}"),
        E::ContainerCreated { container_id, node } => match node {
            Some(node) => format!(
                "created container {} for {s} on node {node}",
                shorten(container_id, 12)
            ),
            None => format!("created container {} for {s}", shorten(container_id, 12)),
        },
        E::Adopted { node } => format!("node {node} took over {s}, whose node is gone"),
        E::Running => format!("{s} is running"),
        E::EndpointPublished { url } => format!("{s} answers MCP at {url}"),
        E::Failed { reason } => format!("{s} failed: {}", one_line(reason)),
        E::Exited {
            exit_code: Some(code),
            reason,
        } => format!("{s} exited with code {code}: {}", one_line(reason)),
        E::Exited {
            exit_code: None,
            reason,
        } => format!("{s} exited: {}", one_line(reason)),
        E::StopRequested => format!("requested stop of {s}"),
        E::RestartRequested => format!("requested restart of {s}"),
        E::Stopped => format!("{s} stopped"),
        E::Enabled => format!("enabled {s}"),
        E::Disabled => format!("disabled {s}"),
        E::DeletionRequested => format!("requested deletion of {s}"),
        E::Deleted => format!("deleted {s}"),
        E::HealthChanged { health } => format!("{s} is now {}", variant_name(health)),
        E::SharingChanged { sharing } if sharing.is_private() => {
            format!("shared {s} with nobody")
        }
        E::SharingChanged { sharing } if sharing.everyone => {
            format!("shared {s} with every user through the gateway")
        }
        E::SharingChanged { sharing } => {
            let n = sharing.users.len();
            let noun = if n == 1 { "user" } else { "users" };
            format!("shared {s} with {n} {noun} through the gateway")
        }
        E::ToolsDiscovered { tools } if tools.is_empty() => format!("{s} offers no tools"),
        E::ToolsDiscovered { tools } => {
            let mut listed: Vec<&str> = tools
                .iter()
                .take(MAX_LISTED_TOOLS)
                .map(|t| t.name.as_str())
                .collect();
            if tools.len() > MAX_LISTED_TOOLS {
                listed.push("…");
            }
            let noun = if tools.len() == 1 { "tool" } else { "tools" };
            format!("{s} offers {} {noun}: {}", tools.len(), listed.join(", "))
        }
    }
}

fn catalog(id: &str, event: &CatalogEvent, names: &mut Names) -> String {
    match event {
        CatalogEvent::Registered {
            kind, definition, ..
        } => {
            names.set(CatalogEntry::TYPE, id, &definition.name);
            format!(
                "registered {} {}",
                variant_name(kind),
                names.label(CatalogEntry::TYPE, id)
            )
        }
        CatalogEvent::Updated {
            version,
            definition,
            ..
        } => {
            let before = names.get(CatalogEntry::TYPE, id).cloned();
            names.set(CatalogEntry::TYPE, id, &definition.name);
            let label = names.label(CatalogEntry::TYPE, id);
            match before {
                Some(old) if old != definition.name => {
                    format!("updated {label} (was {old:?}) to version {version}")
                }
                _ => format!("updated {label} to version {version}"),
            }
        }
        CatalogEvent::Removed => format!("removed {}", names.label(CatalogEntry::TYPE, id)),
        CatalogEvent::Published => format!("published {}", names.label(CatalogEntry::TYPE, id)),
        CatalogEvent::Unpublished => {
            format!("made {} private", names.label(CatalogEntry::TYPE, id))
        }
    }
}

/// Security actions, named by user; key material (even its hash) never appears.
fn user(id: &str, event: &UserEvent, names: &mut Names) -> String {
    if let UserEvent::Created { name, .. } = event {
        names.set(User::TYPE, id, name);
    }
    let u = names.label(User::TYPE, id);
    match event {
        UserEvent::Created { role, .. } => format!("created {u} with role {role}"),
        UserEvent::Disabled => format!("disabled {u}"),
        UserEvent::Enabled => format!("enabled {u}"),
        UserEvent::KeyCreated {
            name,
            prefix,
            expires_at,
            ..
        } => match expires_at {
            Some(at) => format!(
                "created API key {name:?} ({prefix}…) for {u}, expiring {}",
                at.to_rfc3339()
            ),
            None => format!("created API key {name:?} ({prefix}…) for {u}"),
        },
        UserEvent::KeyRevoked { key_id } => {
            format!("revoked API key {} of {u}", shorten(&key_id.to_string(), 8))
        }
        UserEvent::TokenIssued {
            key_id, expires_at, ..
        } => format!(
            "issued a token to {u} for API key {}, expiring {}",
            shorten(&key_id.to_string(), 8),
            expires_at.to_rfc3339()
        ),
        UserEvent::Forgotten => format!("forgot {u}: destroyed its data key"),
        UserEvent::ConsoleSessionOpened {
            key_id, expires_at, ..
        } => format!(
            "{u} signed in to the console with API key {}, until {}",
            shorten(&key_id.to_string(), 8),
            expires_at.to_rfc3339()
        ),
        UserEvent::ConsoleSessionEnded { session_id } => format!(
            "{u} signed out of console session {}",
            shorten(&session_id.to_string(), 8)
        ),
    }
}

/// Bulk operations are named by their action, so each target's line says which
/// operation it belongs to: `bulk start 0192ab34…: server "web-1" succeeded`.
fn bulk(id: &str, event: &BulkEvent, names: &mut Names) -> String {
    if let BulkEvent::Began { operation, .. } = event {
        names.set(BulkOperation::TYPE, id, operation.as_str());
    }
    let label = match names.get(BulkOperation::TYPE, id) {
        Some(operation) => format!("bulk {operation} {}", shorten(id, 8)),
        None => format!("bulk operation {}", shorten(id, 8)),
    };
    match event {
        BulkEvent::Began { server_ids, .. } => {
            let noun = if server_ids.len() == 1 {
                "server"
            } else {
                "servers"
            };
            format!("began {label} of {} {noun}", server_ids.len())
        }
        BulkEvent::TargetSucceeded { server_id } => format!(
            "{label}: {} succeeded",
            names.label(Server::TYPE, &server_id.to_string())
        ),
        BulkEvent::TargetFailed { server_id, error } => format!(
            "{label}: {} failed: {}",
            names.label(Server::TYPE, &server_id.to_string()),
            one_line(error)
        ),
        BulkEvent::Completed {
            state,
            succeeded,
            failed,
        } => format!(
            "{label} {}: {succeeded} succeeded, {failed} failed",
            state.as_str().replace('_', " ")
        ),
    }
}

/// The first `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// `s` on one line, at most a couple of hundred characters.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&flat, MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_character_boundaries() {
        assert_eq!(shorten("0192ab34-aaaa", 8), "0192ab34…");
        assert_eq!(shorten("short", 8), "short");
        assert_eq!(shorten("ééééééééé", 8), "éééééééé…");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }

    #[test]
    fn unknown_names_fall_back_to_a_short_id() {
        let mut names = Names::default();
        let id = "01920000-0000-7000-8000-000000000000";
        assert_eq!(
            server(id, &ServerEvent::StartRequested, &mut names),
            "requested start of server 01920000…"
        );
        names.set(Server::TYPE, id, "github-prod");
        assert_eq!(
            server(id, &ServerEvent::Stopped, &mut names),
            "server \"github-prod\" stopped"
        );
    }

    #[test]
    fn bulk_lines_name_the_operation_and_the_server() {
        use berth_domain::bulk::{BulkAction, BulkState};
        use uuid::Uuid;

        let mut names = Names::default();
        let bulk_id = "01930000-0000-7000-8000-000000000000";
        let server_id = Uuid::from_u128(7);
        assert_eq!(
            bulk(
                bulk_id,
                &BulkEvent::TargetSucceeded { server_id },
                &mut names
            ),
            "bulk operation 01930000…: server 00000000… succeeded"
        );
        let began = BulkEvent::Began {
            operation: BulkAction::Start,
            server_ids: vec![server_id, Uuid::from_u128(8)],
            requested_by: "user:admin".into(),
        };
        assert_eq!(
            bulk(bulk_id, &began, &mut names),
            "began bulk start 01930000… of 2 servers"
        );
        names.set(Server::TYPE, &server_id.to_string(), "web-1");
        let failed = BulkEvent::TargetFailed {
            server_id,
            error: "cannot start a server that is disabled;\nenable it first".into(),
        };
        assert_eq!(
            bulk(bulk_id, &failed, &mut names),
            "bulk start 01930000…: server \"web-1\" failed: cannot start a server that is disabled; enable it first"
        );
        let done = BulkEvent::Completed {
            state: BulkState::PartiallyFailed,
            succeeded: 1,
            failed: 1,
        };
        assert_eq!(
            bulk(bulk_id, &done, &mut names),
            "bulk start 01930000… partially failed: 1 succeeded, 1 failed"
        );
    }
}
