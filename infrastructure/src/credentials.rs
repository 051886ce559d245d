//! The installation's credential keys: one random secret, kept like a data key (wrapped
//! by the master key, re-wrapped on rotation), from which two keys are derived:
//!
//! - the key-hashing key: API keys are stored as HMAC-SHA-256 under it, so a copy of
//!   the database alone cannot test guesses;
//! - the token-signing key: short-lived JWTs (HS256) are signed and verified with it,
//!   statelessly;
//! - the session key: console session cookies and their CSRF tokens are MACs under it,
//!   so neither a token nor a hashed key can pass for one.

use berth_application::ports::ApiKeyHasher;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Pool;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::cipher::MasterKeyCipher;
use crate::key_store::{self, KeyStoreError, OwnerKey};

/// The key store's owner name for the credential secret. Not a user: `users forget`
/// cannot reach it.
pub const CREDENTIALS_OWNER: &str = "system:credentials";

/// The `iss` of every token Berth signs.
pub const TOKEN_ISSUER: &str = "berth";

type HmacSha256 = Hmac<Sha256>;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Always [`TOKEN_ISSUER`].
    pub iss: String,
    /// The user's name.
    pub sub: String,
    /// The user's id.
    pub uid: Uuid,
    /// The user's role when the token was issued.
    pub role: String,
    /// The API key the token was issued for.
    pub key: Uuid,
    /// The token's id.
    pub jti: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

impl TokenClaims {
    /// When the token expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Why a token was refused. Deliberately coarse: callers learn nothing about a forgery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token's lifetime is over.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, or claims missing.
    #[error("the token is not valid")]
    Invalid,
}

/// Derived keys for API-key hashing and token signing. Key bytes are wiped on drop.
#[derive(Clone)]
pub struct CredentialKeys {
    key_hashing: Zeroizing<[u8; 32]>,
    session: Zeroizing<[u8; 32]>,
    node: Zeroizing<[u8; 32]>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for CredentialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialKeys").finish_non_exhaustive()
    }
}

/// HMAC-SHA-256 as a key-derivation function over a uniformly random 32-byte secret.
fn derive(secret: &[u8], label: &str) -> Zeroizing<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(label.as_bytes());
    Zeroizing::new(mac.finalize().into_bytes().into())
}

impl CredentialKeys {
    /// Keys derived from `secret` (32 random bytes).
    pub fn from_secret(secret: &[u8]) -> Self {
        let signing = derive(secret, "berth token signing v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            key_hashing: derive(secret, "berth api key hashing v1"),
            session: derive(secret, "berth console session v1"),
            node: derive(secret, "berth node to node v1"),
            encoding: EncodingKey::from_secret(signing.as_slice()),
            decoding: DecodingKey::from_secret(signing.as_slice()),
            validation,
        }
    }

    /// The installation's keys, creating its secret on first use.
    pub async fn load(pool: &Pool, masters: &MasterKeyCipher) -> Result<Self, KeyStoreError> {
        match key_store::load_or_create(pool, masters, CREDENTIALS_OWNER).await? {
            OwnerKey::Live(key) => Ok(Self::from_secret(key.bytes())),
            OwnerKey::Destroyed { key_id } => Err(KeyStoreError::Destroyed {
                owner: CREDENTIALS_OWNER.into(),
                key_id,
            }),
        }
    }

    /// Signs `claims` as a JWT (HS256).
    pub fn sign(&self, claims: &TokenClaims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_else(|_| unreachable!("claims of plain fields always serialise"))
    }

    /// Verifies a JWT's signature, algorithm, issuer and expiry; answers its claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// The HMAC-SHA-256 (hex) of `data` under the session key: what seals a console
    /// session cookie and derives its CSRF token.
    pub fn session_mac(&self, data: &str) -> String {
        hmac_hex(&self.session, data)
    }
}

impl CredentialKeys {
    /// What one node of this installation presents to another (the node routes): every
    /// node derives the same from the installation's secret, and nothing else can.
    pub fn node_token(&self) -> SecretString {
        SecretString::from(hmac_hex(&self.node, NODE_TOKEN_LABEL))
    }

    /// Whether `presented` is [`Self::node_token`], compared in constant time.
    pub fn is_node_token(&self, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(self.node.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(NODE_TOKEN_LABEL.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }
}

/// What the node token is the MAC of.
const NODE_TOKEN_LABEL: &str = "berth node";

fn hmac_hex(key: &[u8; 32], data: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_slice())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl ApiKeyHasher for CredentialKeys {
    fn hash(&self, key: &str) -> String {
        hmac_hex(&self.key_hashing, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> TokenClaims {
        let now = Utc::now().timestamp();
        TokenClaims {
            iss: TOKEN_ISSUER.into(),
            sub: "ann".into(),
            uid: Uuid::new_v4(),
            role: "viewer".into(),
            key: Uuid::new_v4(),
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + exp_in,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let keys = CredentialKeys::from_secret(&[7; 32]);
        let c = claims(60);
        let token = keys.sign(&c);
        assert_eq!(keys.verify(&token), Ok(c));

        // Change the payload (role → admin), keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = claims(60);
        forged_claims.role = "admin".into();
        let forged_payload = keys.sign(&forged_claims);
        let forged_payload = forged_payload.split('.').nth(1).unwrap_or_default();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(keys.verify(&forged), Err(TokenError::Invalid));

        // Signed by another installation.
        let other = CredentialKeys::from_secret(&[8; 32]);
        assert_eq!(
            keys.verify(&other.sign(&claims(60))),
            Err(TokenError::Invalid)
        );

        // `alg: none`.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(keys.verify(&unsigned), Err(TokenError::Invalid));

        assert_eq!(keys.verify("garbage"), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = CredentialKeys::from_secret(&[7; 32]);
        assert_eq!(
            keys.verify(&keys.sign(&claims(-1))),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn key_hashes_are_keyed() {
        let a = CredentialKeys::from_secret(&[1; 32]);
        let b = CredentialKeys::from_secret(&[2; 32]);
        assert_eq!(a.hash("berth_x"), a.hash("berth_x"));
        assert_ne!(a.hash("berth_x"), a.hash("berth_y"));
        assert_ne!(a.hash("berth_x"), b.hash("berth_x"));
        assert_eq!(a.hash("berth_x").len(), 64);
    }
}
