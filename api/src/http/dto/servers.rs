//! Bodies of `POST /api/v1/servers` and `PATCH /api/v1/servers/{id}`.

use std::collections::BTreeMap;

use berth_application::servers::{NewServer, ServerConfigPatch};
use berth_domain::server::RestartPolicy;
use berth_domain::FieldError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::values::{ConfigValue, JsonText, SecretValue};

/// A new server: which catalog entry, its name, config and secrets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerBody {
    /// The catalog entry to instantiate.
    pub catalog_id: Uuid,
    /// Its name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Plain configuration; every value a string.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Secret configuration; every value a string. Sealed at once, never shown again.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// What Berth does when it fails (default: never restart).
    #[serde(default)]
    pub restart_policy: Option<RestartPolicyBody>,
}

/// What Berth does when a running server fails or exits by itself.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RestartPolicyBody {
    /// Leave it `failed`.
    Never,
    /// Restart it, with a growing pause, at most `max_retries` (1–100) times in a row.
    OnFailure {
        /// Automatic restarts allowed in a row.
        #[schema(minimum = 1, maximum = 100)]
        max_retries: u32,
    },
}

impl From<RestartPolicyBody> for RestartPolicy {
    fn from(body: RestartPolicyBody) -> Self {
        match body {
            RestartPolicyBody::Never => Self::Never,
            RestartPolicyBody::OnFailure { max_retries } => Self::OnFailure { max_retries },
        }
    }
}

/// A change of some config keys and secrets; a key set to `null` is removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchServerBody {
    /// Plain keys to set (a string) or remove (`null`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Secrets to set (a string) or remove (`null`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// A new restart policy.
    #[serde(default)]
    pub restart_policy: Option<RestartPolicyBody>,
}

/// The most keys `config` or `secrets` may hold in one request.
pub const MAX_MAP_KEYS: usize = 100;

/// The longest key of `config` or `secrets`, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Keeps the string values of `map`, recording `place.KEY` for every other value
/// (`null` too, unless `null_removes`); refuses maps with too many or too long keys.
fn strings<T>(
    place: &str,
    map: BTreeMap<String, JsonText<T>>,
    null_removes: bool,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, Option<T>> {
    let mut out = BTreeMap::new();
    if map.len() > MAX_MAP_KEYS {
        errors.push(FieldError::new(
            place,
            format!("must have at most {MAX_MAP_KEYS} keys"),
        ));
        return out;
    }
    if map.keys().any(|k| k.is_empty() || k.len() > MAX_KEY_LEN) {
        errors.push(FieldError::new(
            place,
            format!("keys must be 1 to {MAX_KEY_LEN} bytes"),
        ));
        return out;
    }
    for (key, value) in map {
        match value {
            JsonText::Text(v) => {
                out.insert(key, Some(v));
            }
            JsonText::Null if null_removes => {
                out.insert(key, None);
            }
            JsonText::Null => errors.push(FieldError::new(
                format!("{place}.{key}"),
                "must be a string, not null",
            )),
            JsonText::Other(kind) => errors.push(FieldError::new(
                format!("{place}.{key}"),
                format!("must be a string, not {kind}"),
            )),
        }
    }
    out
}

impl CreateServerBody {
    /// The command input, or every value that is not a string.
    pub fn into_new_server(self) -> Result<NewServer, Vec<FieldError>> {
        let mut errors = Vec::new();
        let config = strings("config", self.config, false, &mut errors);
        let secrets = strings("secrets", self.secrets, false, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewServer {
            catalog_id: self.catalog_id.into(),
            name: self.name,
            config: config
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            secrets: secrets
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            restart_policy: self.restart_policy.map(Into::into).unwrap_or_default(),
        })
    }
}

impl PatchServerBody {
    /// The command input, or every value that is neither a string nor `null`.
    pub fn into_patch(self) -> Result<ServerConfigPatch, Vec<FieldError>> {
        let mut errors = Vec::new();
        let config = strings("config", self.config, true, &mut errors);
        let secrets = strings("secrets", self.secrets, true, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ServerConfigPatch {
            config,
            secrets,
            restart_policy: self.restart_policy.map(Into::into),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_string_values_are_named() {
        let body: Result<CreateServerBody, _> = serde_json::from_str(&format!(
            r#"{{"catalog_id":"{}","name":"a","config":{{"PORT":8080,"OK":"x","N":null}},"secrets":{{"T":true}}}}"#,
            Uuid::nil()
        ));
        let errors = body.ok().map(CreateServerBody::into_new_server);
        let fields: Vec<String> = match errors {
            Some(Err(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        };
        assert_eq!(fields, ["config.N", "config.PORT", "secrets.T"]);
    }

    #[test]
    fn a_patch_removes_keys_set_to_null() {
        let body: Result<PatchServerBody, _> =
            serde_json::from_str(r#"{"config":{"A":"1","B":null},"secrets":{"S":null}}"#);
        let patch = body.ok().map(PatchServerBody::into_patch);
        match patch {
            Some(Ok(p)) => {
                assert_eq!(p.config.get("A"), Some(&Some("1".to_string())));
                assert_eq!(p.config.get("B"), Some(&None));
                assert!(p.secrets.get("S").is_some_and(Option::is_none));
            }
            other => panic!("expected a patch, got {other:?}"),
        }
    }
}

/// Which version of its catalog entry a server runs from its next start.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeServerBody {
    /// The entry's version to run (default: its newest).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub catalog_version: Option<u32>,
}

/// Who besides its owner may use a server through the MCP gateway; replaces the sharing
/// before. `{}` shares it with nobody.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharingBody {
    /// Every user of this Berth may use it.
    #[serde(default)]
    pub everyone: bool,
    /// These users may (their ids).
    #[serde(default)]
    pub users: Vec<Uuid>,
}
