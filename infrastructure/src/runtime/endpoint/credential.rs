//! What a server's requests carry to authenticate, built from its entry's [`ApiAuth`] and
//! its own configuration: the same for a registered API's calls and for a remote MCP
//! server's session.

use std::collections::BTreeMap;

use base64::Engine;
use berth_domain::catalog::openapi::ApiAuth;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

use super::call::CallError;

/// The credential of one server.
#[derive(Debug, Default, Clone)]
pub struct Credential {
    /// A header to send (marked sensitive: never logged by the HTTP client).
    pub header: Option<(HeaderName, HeaderValue)>,
    /// A query parameter to send.
    pub query: Option<(String, String)>,
}

impl Credential {
    /// The credential `auth` describes, from the values in `config`.
    pub fn of(auth: &ApiAuth, config: &BTreeMap<String, SecretString>) -> Result<Self, CallError> {
        let secret = |key: &str| {
            config
                .get(key)
                .map(|v| v.expose_secret().to_owned())
                .ok_or_else(|| CallError::Credential(key.to_owned()))
        };
        let header = |name: HeaderName, value: String, key: &str| {
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| CallError::Credential(key.to_owned()))?;
            value.set_sensitive(true);
            Ok::<_, CallError>(Some((name, value)))
        };
        Ok(match auth {
            ApiAuth::None => Self::default(),
            ApiAuth::Header { name, secret: key } => Self {
                header: header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| CallError::Credential(key.clone()))?,
                    secret(key)?,
                    key,
                )?,
                query: None,
            },
            ApiAuth::Query { name, secret: key } => Self {
                header: None,
                query: Some((name.clone(), secret(key)?)),
            },
            ApiAuth::Bearer { secret: key } => Self {
                header: header(AUTHORIZATION, format!("Bearer {}", secret(key)?), key)?,
                query: None,
            },
            ApiAuth::Basic { username, password } => {
                let pair = format!("{}:{}", secret(username)?, secret(password)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Self {
                    header: header(AUTHORIZATION, format!("Basic {encoded}"), password)?,
                    query: None,
                }
            }
        })
    }
}
