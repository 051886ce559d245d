//! The two adapters of the container runtime port ([`berth_application::runtime`]):
//! [`DockerRuntime`] runs MCP servers as Docker containers through the engine's API,
//! [`ProcessRuntime`] runs them as local child processes so Berth works without Docker.
//!
//! Both key everything by the server id and derive a *spec hash* from the launch spec, so
//! `create` after a crash finds what an earlier attempt made, and `create` after a
//! configuration change replaces it instead of reusing a stale one.

pub mod docker;
pub mod endpoint;
pub mod process;

pub use docker::DockerRuntime;
pub use process::ProcessRuntime;

use berth_application::runtime::{LaunchSpec, RuntimeError};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// The longest line kept in logs; longer ones are cut so one runaway write cannot eat
/// the memory a log buffer is allowed.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// A fingerprint of everything in `spec` that shapes the container or process.
///
/// Environment values may be secrets: each is replaced by SHA-256 over the server id and
/// the value, so the fingerprint (stored in a container label, readable by anyone who can
/// `docker inspect`) reveals no plaintext and equal secrets of two servers hash apart.
pub(crate) fn spec_hash(spec: &LaunchSpec) -> String {
    let env: std::collections::BTreeMap<&str, String> = spec
        .env
        .iter()
        .map(|(key, value)| {
            let mut hasher = Sha256::new();
            hasher.update(b"berth.env.v1\0");
            hasher.update(spec.server_id.as_bytes());
            hasher.update(value.expose_secret().as_bytes());
            (key.as_str(), hex::encode(hasher.finalize()))
        })
        .collect();
    let canonical = serde_json::json!({
        "version": 1,
        "server_id": spec.server_id,
        "owner": spec.owner,
        "name": spec.name,
        "transport": spec.transport,
        "runtime": spec.runtime,
        "resources": spec.resources,
        "env": env,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Rejects environment entries no operating system accepts, before anything is created.
pub(crate) fn validate_env(spec: &LaunchSpec) -> Result<(), RuntimeError> {
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(RuntimeError::Failed(format!(
                "`{key}` cannot be an environment variable name (empty, or contains `=` or NUL)"
            )));
        }
        if value.expose_secret().contains('\0') {
            return Err(RuntimeError::Failed(format!(
                "the value of `{key}` contains a NUL byte, which no environment can hold"
            )));
        }
    }
    Ok(())
}

/// Cuts a byte stream into lines (without their `\n`), decoding lossily.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `bytes`, returning every line they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if let Some(line) = chunk.strip_suffix(b"\n") {
                self.append(line);
                lines.push(self.take());
            } else {
                self.append(chunk);
                if self.pending.len() >= MAX_LINE_BYTES {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// What is left after the stream ended, if anything.
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        self.pending
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
        self.pending.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_domain::catalog::{Resources, RuntimeSpec, Transport};
    use secrecy::SecretString;
    use uuid::Uuid;

    use super::*;

    fn spec(secret: &str) -> LaunchSpec {
        LaunchSpec {
            server_id: Uuid::from_u128(7),
            owner: "alice".into(),
            name: "notes".into(),
            transport: Transport::Stdio,
            runtime: RuntimeSpec::Process {
                command: "cat".into(),
                args: vec![],
            },
            env: BTreeMap::from([("TOKEN".to_owned(), SecretString::from(secret))]),
            resources: Resources::default(),
        }
    }

    #[test]
    fn spec_hash_follows_secret_values_without_containing_them() {
        let one = spec_hash(&spec("hunter2"));
        assert_eq!(one, spec_hash(&spec("hunter2")));
        assert_ne!(one, spec_hash(&spec("hunter3")));
        assert!(!one.contains("hunter2"));
        assert_eq!(one.len(), 64);
    }

    #[test]
    fn line_splitter_joins_chunks_and_keeps_the_tail() {
        let mut lines = LineSplitter::default();
        assert_eq!(lines.push(b"one\ntw"), vec!["one"]);
        assert_eq!(lines.push(b"o\r\nthree"), vec!["two"]);
        assert_eq!(lines.finish().as_deref(), Some("three"));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn line_splitter_cuts_runaway_lines() {
        let mut lines = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let out = lines.push(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines.push(b"y\n"), vec!["y"]);
    }
}
