//! The files of `deploy/` hold to what Berth is: every `berth` command line they give
//! parses, every `BERTH_*` variable they set is one Berth reads, each role is there, the
//! probes name Berth's health routes, every Deployment has a PodDisruptionBudget, and
//! `deploy/keys.sh` makes keys of the form Berth takes. No cluster or registry is needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_api::cli::args::Cli;
use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of a YAML file, with its merge keys (`<<: *anchor`) applied as Docker
/// Compose applies them.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let failed = |e: yaml_serde::Error| -> ! { panic!("{}: {e}", path.display()) };
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| {
            let mut yaml = yaml_serde::Value::deserialize(document).unwrap_or_else(|e| failed(e));
            yaml.apply_merge().unwrap_or_else(|e| failed(e));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The variables Berth reads: its settings (`BERTH_<KEY>`) and the keys read on their own.
fn known_variables() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = berth_api::cli::config::ENV_KEYS
        .iter()
        .map(|key| format!("BERTH_{}", key.to_ascii_uppercase()))
        .collect();
    known.extend(
        [
            berth_infrastructure::cipher::MASTER_KEY_ENV,
            berth_infrastructure::checkpoint::SIGNING_KEY_ENV,
            berth_api::serve::admin_token::ADMIN_TOKEN_ENV,
            "DATABASE_URL",
        ]
        .map(str::to_owned),
    );
    known
}

/// `berth <args>` as Berth reads it; the role it asks for.
fn role_of(args: &[String]) -> String {
    let line: Vec<&str> = std::iter::once("berth")
        .chain(args.iter().map(String::as_str))
        .collect();
    let parsed = Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let args = args.join(" ");
    assert!(
        args.starts_with("serve"),
        "{args}: only `berth serve` runs in a deployment ({parsed:?})"
    );
    ["api", "worker", "all"]
        .into_iter()
        .find(|role| args.contains(&format!("--role {role}")))
        .unwrap_or("all")
        .to_owned()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_file_runs_two_api_and_two_worker_nodes_of_one_installation() {
    let compose = documents(&deploy().join("compose.yaml"));
    let services = compose[0]["services"].as_object().expect("services");
    let known = known_variables();
    let mut roles = Vec::new();
    let mut nodes = BTreeSet::new();
    for (name, service) in services {
        let command = strings(&service["command"]);
        if command.is_empty() {
            continue;
        }
        let role = role_of(&command);
        let environment = service["environment"].as_object().expect("environment");
        for variable in environment.keys().filter(|k| k.starts_with("BERTH_")) {
            assert!(
                known.contains(variable),
                "{name}: Berth does not read {variable}"
            );
        }
        for shared in [
            "DATABASE_URL",
            "BERTH_MASTER_KEY",
            "BERTH_SIGNING_KEY",
            "BERTH_ADMIN_TOKEN",
        ] {
            assert!(environment.contains_key(shared), "{name} lacks {shared}");
        }
        assert_eq!(
            environment["BERTH_ADVERTISE_URL"],
            Value::String(format!("http://{name}:7070")),
            "{name} must be reached by its service name"
        );
        let node = command
            .windows(2)
            .find(|w| w[0] == "--node")
            .map(|w| w[1].clone())
            .expect("a node name");
        assert!(nodes.insert(node.clone()), "node {node} named twice");
        let mounts = strings(&service["volumes"]);
        let docker = mounts
            .iter()
            .any(|m| m.starts_with("/var/run/docker.sock:"));
        assert_eq!(
            docker,
            role != "api",
            "{name}: workers, and only they, reach Docker"
        );
        roles.push(role);
    }
    roles.sort();
    assert_eq!(roles, ["api", "api", "worker", "worker"]);
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    for word in dockerfile.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("BERTH_") {
            assert!(
                known.contains(word),
                "the image sets {word}, which Berth does not read"
            );
        }
    }
    let nginx = std::fs::read_to_string(deploy().join("nginx.conf")).expect("nginx.conf");
    for api in ["berth-api-1:7070", "berth-api-2:7070"] {
        assert!(nginx.contains(api), "the balancer does not send to {api}");
    }
}

#[test]
fn the_kubernetes_manifests_probe_health_and_keep_a_node_of_each_role() {
    let dir = deploy().join("kubernetes");
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        manifests.extend(documents(&entry.expect("an entry").path()));
    }
    let known = known_variables();
    let secret = manifests
        .iter()
        .find(|m| m["kind"] == "Secret")
        .expect("a Secret");
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .map(String::as_str)
        .collect();
    for key in &secret_keys {
        assert!(known.contains(*key), "Berth does not read {key}");
    }
    let budgets: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "PodDisruptionBudget")
        .collect();
    let mut roles = BTreeSet::new();
    for deployment in manifests.iter().filter(|m| m["kind"] == "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        roles.insert(role_of(&strings(&container["args"])));
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{name}"
        );
        for variable in container["env"].as_array().into_iter().flatten() {
            let variable = variable["name"].as_str().unwrap_or_default();
            assert!(
                !variable.starts_with("BERTH_") || known.contains(variable),
                "{name}: Berth does not read {variable}"
            );
        }
        assert_eq!(
            container["envFrom"][0]["secretRef"]["name"], "berth",
            "{name}"
        );
        let labels = &deployment["spec"]["selector"]["matchLabels"];
        assert!(
            budgets
                .iter()
                .any(|b| &b["spec"]["selector"]["matchLabels"] == labels
                    && (b["spec"]["minAvailable"] == 1 || b["spec"]["maxUnavailable"] == 1)),
            "{name} has no PodDisruptionBudget"
        );
    }
    assert_eq!(
        roles.into_iter().collect::<Vec<_>>(),
        ["api", "worker"],
        "a Deployment per role"
    );
}

#[test]
fn keys_sh_makes_keys_berth_takes() {
    let out = std::process::Command::new("sh")
        .arg(deploy().join("keys.sh"))
        .output()
        .expect("running keys.sh");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("text");
    let known = known_variables();
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').expect("KEY=value");
        seen.insert(key.to_owned());
        assert!(key == "POSTGRES_PASSWORD" || known.contains(key), "{key}");
        match key {
            "BERTH_MASTER_KEY" | "BERTH_SIGNING_KEY" => {
                let key = berth_infrastructure::cipher::MasterKey::from_base64(value);
                assert!(key.is_ok(), "{line}");
            }
            "BERTH_ADMIN_TOKEN" => {
                let digits = value.strip_prefix("berth_").expect("the prefix");
                assert_eq!(digits.len(), 64, "{line}");
                assert!(digits.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
            }
            _ => assert!(!value.is_empty()),
        }
    }
    assert_eq!(seen.len(), 4, "{text}");
}
