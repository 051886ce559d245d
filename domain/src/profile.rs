//! A gateway profile (a virtual server): a named selection of its owner's servers, and
//! of each one's tools, served at `/mcp/p/{name}`. Agents see a short list made for their
//! task instead of every tool their user may call; API keys may be limited to profiles.
//!
//! A profile's id derives from its owner and name, so the gateway finds it from the URL
//! without a read model, and one owner's names never meet another's.

use std::collections::BTreeSet;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decide::handle_by_decide;
use crate::id::AggregateId;
use crate::validation::{check_name, FieldError, Violations};

/// A profile's id.
pub type ProfileId = AggregateId<Profile>;

/// The namespace of profile ids.
const PROFILE_NAMESPACE: Uuid = Uuid::from_u128(0x6265_7274_682d_7072_6f66_696c_652d_6964);

/// The most servers one profile selects.
pub const MAX_SERVERS: usize = 100;
/// The most tool names one server's allow or deny list holds.
pub const MAX_TOOLS: usize = 500;
/// The longest tool name a list may hold.
pub const MAX_TOOL_NAME: usize = 128;

impl ProfileId {
    /// The id of `owner`'s profile called `name`.
    pub fn of(owner: &str, name: &str) -> Self {
        Self::from_uuid(Uuid::new_v5(
            &PROFILE_NAMESPACE,
            format!("{owner}\0{name}").as_bytes(),
        ))
    }
}

/// One server in a profile, and which of its tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileServer {
    /// The server.
    pub server_id: Uuid,
    /// Only these tools (by the server's own names); every tool when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<BTreeSet<String>>,
    /// Never these tools, even when allowed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deny: BTreeSet<String>,
}

impl ProfileServer {
    /// Whether the tool called `tool` (the server's own name) is in.
    pub fn includes_tool(&self, tool: &str) -> bool {
        !self.deny.contains(tool) && self.allow.as_ref().is_none_or(|a| a.contains(tool))
    }
}

/// What a profile may be asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProfileCommand {
    /// Define it, or replace what it selects.
    Define {
        /// Its owner (`user:NAME`).
        owner: String,
        /// Its name.
        name: String,
        /// What it selects.
        servers: Vec<ProfileServer>,
    },
    /// Remove it (its name may be used again).
    Remove,
}

/// What happened to a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProfileEvent {
    /// It was defined, or what it selects replaced.
    Defined {
        /// Its owner (`user:NAME`).
        owner: String,
        /// Its name.
        name: String,
        /// What it selects.
        servers: Vec<ProfileServer>,
    },
    /// It was removed.
    Removed,
}

impl DomainEvent for ProfileEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Defined { .. } => "ProfileDefined",
            Self::Removed => "ProfileRemoved",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Why a profile command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No profile has this name.
    #[error("no profile has this name")]
    NotFound,
    /// Something in it is not valid.
    #[error("the profile is not valid")]
    Invalid(Vec<FieldError>),
}

/// A profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Whether it is defined (and not removed).
    pub defined: bool,
    /// Its owner.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// What it selects.
    pub servers: Vec<ProfileServer>,
}

impl Profile {
    /// The selection of `server_id`, if the profile has it.
    pub fn server(&self, server_id: Uuid) -> Option<&ProfileServer> {
        self.servers.iter().find(|s| s.server_id == server_id)
    }

    /// Decides what a command produces.
    pub fn decide(&self, command: ProfileCommand) -> Result<Vec<ProfileEvent>, ProfileError> {
        match command {
            ProfileCommand::Define {
                owner,
                name,
                servers,
            } => {
                validate(&name, &servers).map_err(ProfileError::Invalid)?;
                Ok(vec![ProfileEvent::Defined {
                    owner,
                    name,
                    servers,
                }])
            }
            ProfileCommand::Remove if !self.defined => Err(ProfileError::NotFound),
            ProfileCommand::Remove => Ok(vec![ProfileEvent::Removed]),
        }
    }
}

fn validate(name: &str, servers: &[ProfileServer]) -> Result<(), Vec<FieldError>> {
    let mut v = Violations::default();
    check_name(&mut v, "name", name);
    if servers.len() > MAX_SERVERS {
        v.add(
            "servers",
            format!("must hold at most {MAX_SERVERS} servers"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, server) in servers.iter().enumerate() {
        if !seen.insert(server.server_id) {
            v.add(format!("servers[{i}].server_id"), "is listed twice");
        }
        for (list, names) in [
            ("allow", server.allow.clone().unwrap_or_default()),
            ("deny", server.deny.clone()),
        ] {
            if names.len() > MAX_TOOLS {
                v.add(
                    format!("servers[{i}].{list}"),
                    format!("must hold at most {MAX_TOOLS} tools"),
                );
            }
            if names
                .iter()
                .any(|t| t.is_empty() || t.len() > MAX_TOOL_NAME || t.chars().any(char::is_control))
            {
                v.add(
                    format!("servers[{i}].{list}"),
                    format!("tool names must be 1 to {MAX_TOOL_NAME} characters, without control characters"),
                );
            }
        }
    }
    v.into_result()
}

impl Aggregate for Profile {
    const TYPE: &'static str = "profile";
    type Command = ProfileCommand;
    type Event = ProfileEvent;
    type Error = ProfileError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProfileEvent::Defined {
                owner,
                name,
                servers,
            } => {
                self.defined = true;
                self.owner = owner;
                self.name = name;
                self.servers = servers;
            }
            ProfileEvent::Removed => {
                self.defined = false;
                self.servers.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u128, allow: Option<&[&str]>, deny: &[&str]) -> ProfileServer {
        ProfileServer {
            server_id: Uuid::from_u128(id),
            allow: allow.map(|a| a.iter().map(|t| (*t).to_owned()).collect()),
            deny: deny.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn define(name: &str, servers: Vec<ProfileServer>) -> ProfileCommand {
        ProfileCommand::Define {
            owner: "user:ann".into(),
            name: name.into(),
            servers,
        }
    }

    #[test]
    fn allow_and_deny_pick_tools() {
        let all = server(1, None, &["delete"]);
        assert!(all.includes_tool("read") && !all.includes_tool("delete"));
        let some = server(1, Some(&["read", "delete"]), &["delete"]);
        assert!(some.includes_tool("read"));
        assert!(!some.includes_tool("write") && !some.includes_tool("delete"));
    }

    #[test]
    fn a_profile_is_defined_replaced_removed_and_defined_again() {
        let mut profile = Profile::default();
        assert_eq!(
            profile.decide(ProfileCommand::Remove),
            Err(ProfileError::NotFound)
        );
        for event in profile
            .decide(define("work", vec![server(1, None, &[])]))
            .unwrap()
        {
            profile.apply(event);
        }
        assert!(profile.defined && profile.server(Uuid::from_u128(1)).is_some());
        for event in profile
            .decide(define("work", vec![server(2, None, &[])]))
            .unwrap()
        {
            profile.apply(event);
        }
        assert!(profile.server(Uuid::from_u128(1)).is_none());
        for event in profile.decide(ProfileCommand::Remove).unwrap() {
            profile.apply(event);
        }
        assert!(!profile.defined);
        assert!(profile.decide(define("work", vec![])).is_ok());
    }

    #[test]
    fn bad_names_repeated_servers_and_bad_tool_names_are_refused_by_field() {
        let refused = Profile::default().decide(define(
            "has space",
            vec![server(1, Some(&[""]), &[]), server(1, None, &["x\u{7}"])],
        ));
        let Err(ProfileError::Invalid(errors)) = refused else {
            panic!("{refused:?}");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "servers[0].allow",
                "servers[1].server_id",
                "servers[1].deny"
            ]
        );
    }

    #[test]
    fn ids_are_per_owner_and_name() {
        assert_eq!(
            ProfileId::of("user:ann", "work"),
            ProfileId::of("user:ann", "work")
        );
        assert_ne!(
            ProfileId::of("user:ann", "work"),
            ProfileId::of("user:bob", "work")
        );
        assert_ne!(
            ProfileId::of("user:ann", "work"),
            ProfileId::of("user:ann", "home")
        );
    }
}
