//! The HTTPS connections Berth makes (registered APIs, remote MCP servers): rustls,
//! trusting the system's certificate authorities and any an administrator adds
//! (`upstream_ca_file`), such as an internal CA that signs private APIs.

use std::path::{Path, PathBuf};

/// Why the added certificate authorities cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate, or one that is not well formed.
    #[error("{path} holds no usable PEM certificate: {reason}")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Whom outbound TLS trusts, and the one way Berth builds its HTTP clients.
#[derive(Debug, Clone, Default)]
pub struct OutboundTls {
    added: Vec<reqwest::Certificate>,
}

impl OutboundTls {
    /// The system's certificate authorities only.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's certificate authorities and those in the PEM bundle at `path`.
    pub fn with_added(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let refused = |reason: String| TlsError::Certificates {
            path: path.to_owned(),
            reason,
        };
        let added =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| refused(e.to_string()))?;
        if added.is_empty() {
            return Err(refused("no certificate in it".into()));
        }
        let tls = Self { added };
        // A certificate is only parsed when a client is built: refused now, not at the
        // first connection.
        tls.client_builder().build().map_err(|e| {
            refused(
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
            )
        })?;
        Ok(tls)
    }

    /// The system's, with the file's when `path` is given.
    pub fn from_optional(path: Option<&Path>) -> Result<Self, TlsError> {
        path.map_or_else(|| Ok(Self::system()), Self::with_added)
    }

    /// A client builder that trusts them. Its redirects stay on the origin they started
    /// from (scheme, host and port: a server cannot send Berth, and the credential of a
    /// request, to another host, and an address literal it names is the one already
    /// checked), at most five, and it sends no `Referer` (the previous URL may carry a
    /// query credential).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_certs_merge(self.added.iter().cloned())
            .referer(false)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if same_origin && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_usable_certificate_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let missing = dir.path().join("missing.pem");
        let error = OutboundTls::with_added(&missing).expect_err("a missing file");
        assert!(error.to_string().contains("missing.pem"), "{error}");
        for (name, text) in [
            ("empty.pem", ""),
            ("text.pem", "not a certificate"),
            (
                "broken.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing");
            let error = OutboundTls::with_added(&path).expect_err(name);
            assert!(error.to_string().contains(name), "{error}");
        }
        assert!(OutboundTls::from_optional(None).is_ok());
    }
}
