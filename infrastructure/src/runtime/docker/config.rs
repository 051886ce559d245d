//! What Berth asks the engine to create for one server: name, labels, environment,
//! limits and the locked-down host configuration.

use std::collections::HashMap;

use berth_application::runtime::{LaunchSpec, RuntimeError};
use berth_domain::catalog::{RuntimeSpec, Transport};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::runtime::{spec_hash, validate_env};

/// Label holding the server id.
pub const LABEL_SERVER_ID: &str = "berth.server_id";
/// Label holding the owner.
pub const LABEL_OWNER: &str = "berth.owner";
/// Label marking every container Berth manages (`true`).
pub const LABEL_MANAGED: &str = "berth.managed";
/// The value of [`LABEL_MANAGED`] when no installation id was given.
pub const DEFAULT_INSTALLATION: &str = "true";
/// Label holding the spec hash (no secret plaintext; see `spec_hash`).
pub const LABEL_SPEC_HASH: &str = "berth.spec_hash";
/// Label holding the server's name, for people reading `docker ps`.
pub const LABEL_NAME: &str = "berth.name";
/// Label holding the transport (`stdio` or `http`).
pub const LABEL_TRANSPORT: &str = "berth.transport";

/// Size of the writable `/tmp` each container gets over its read-only root.
const TMPFS_OPTIONS: &str = "rw,nosuid,nodev,size=64m";

/// The container name of a server.
pub fn container_name(server_id: Uuid) -> String {
    format!("berth-{server_id}")
}

/// The container port key (`<port>/tcp`) the engine uses in port maps.
pub fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

/// A container to create, with the fingerprint that tells whether an existing one fits.
pub struct ContainerPlan {
    /// The image reference.
    pub image: String,
    /// The create request.
    pub body: ContainerCreateBody,
    /// The value of [`LABEL_SPEC_HASH`].
    pub spec_hash: String,
}

/// Builds the create request for `spec`, labelled as belonging to `installation`.
pub fn plan(spec: &LaunchSpec, installation: &str) -> Result<ContainerPlan, RuntimeError> {
    let RuntimeSpec::Docker {
        image,
        command,
        port,
    } = &spec.runtime
    else {
        return Err(RuntimeError::Failed(
            "this catalog entry runs a local command; the Docker runtime runs only `docker` \
             entries"
                .into(),
        ));
    };
    validate_env(spec)?;
    let http_port = match (spec.transport, port) {
        (Transport::Http, Some(port)) => Some(*port),
        (Transport::Http, None) => {
            return Err(RuntimeError::Failed(
                "this catalog entry serves MCP over HTTP but names no port; add the port its \
                 image listens on to the entry"
                    .into(),
            ))
        }
        (Transport::Stdio, _) => None,
    };
    let stdio = spec.transport == Transport::Stdio;
    let hash = spec_hash(spec);

    let labels = HashMap::from([
        (LABEL_SERVER_ID.to_owned(), spec.server_id.to_string()),
        (LABEL_OWNER.to_owned(), spec.owner.clone()),
        (LABEL_MANAGED.to_owned(), installation.to_owned()),
        (LABEL_SPEC_HASH.to_owned(), hash.clone()),
        (LABEL_NAME.to_owned(), spec.name.clone()),
        (
            LABEL_TRANSPORT.to_owned(),
            transport_label(spec.transport).to_owned(),
        ),
    ]);
    let env = spec
        .env
        .iter()
        .map(|(key, value)| format!("{key}={}", value.expose_secret()))
        .collect();
    let memory = spec
        .resources
        .memory_mb
        .map(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX));

    let host_config = HostConfig {
        memory,
        // Equal to the memory limit: no swap, so an over-limit server is OOM-killed and
        // reported as such instead of slowing the host down.
        memory_swap: memory,
        nano_cpus: spec.resources.cpus.map(|cpus| (cpus * 1e9).round() as i64),
        pids_limit: spec
            .resources
            .pids
            .map(|pids| i64::try_from(pids).unwrap_or(i64::MAX)),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            TMPFS_OPTIONS.to_owned(),
        )])),
        // Berth's reconciler decides about restarts; an engine restarting on its own
        // would hide crashes from the event log.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        // A tiny init as PID 1 forwards SIGTERM (PID 1 ignores it by default, so most
        // servers would sit out the whole grace period) and reaps zombies.
        init: Some(true),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), "10m".to_owned()),
                ("max-file".to_owned(), "3".to_owned()),
            ])),
        }),
        port_bindings: http_port.map(|port| {
            HashMap::from([(
                port_key(port),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                }]),
            )])
        }),
        ..Default::default()
    };

    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: (!command.is_empty()).then(|| command.clone()),
        env: Some(env),
        labels: Some(labels),
        attach_stdin: Some(stdio),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(stdio),
        // Berth attaches for each MCP session; the server's stdin must outlive them.
        stdin_once: Some(false),
        tty: Some(false),
        exposed_ports: http_port.map(|port| vec![port_key(port)]),
        host_config: Some(host_config),
        ..Default::default()
    };
    Ok(ContainerPlan {
        image: image.clone(),
        body,
        spec_hash: hash,
    })
}

/// The label value of a transport.
pub fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Stdio => "stdio",
        Transport::Http => "http",
    }
}

/// Splits an image reference into what the pull API takes: the name and the tag (or
/// digest), defaulting to `latest` so the engine never pulls every tag of a repository.
pub fn pull_reference(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name.to_owned(), digest.to_owned());
    }
    let last_slash = image.rfind('/').map_or(0, |at| at + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (image[..at].to_owned(), image[at + 1..].to_owned())
        }
        None => (image.to_owned(), "latest".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::pull_reference;

    #[test]
    fn pull_reference_splits_tags_digests_and_registry_ports() {
        let split = |s: &str| {
            let (name, tag) = pull_reference(s);
            format!("{name} {tag}")
        };
        assert_eq!(split("alpine"), "alpine latest");
        assert_eq!(split("alpine:3.20"), "alpine 3.20");
        assert_eq!(split("localhost:5000/x/y"), "localhost:5000/x/y latest");
        assert_eq!(split("localhost:5000/x/y:v1"), "localhost:5000/x/y v1");
        assert_eq!(split("ghcr.io/a/b@sha256:abc"), "ghcr.io/a/b sha256:abc");
    }
}
