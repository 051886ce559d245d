//! Reading what the engine says about a container.

use berth_application::runtime::{InstanceState, RuntimeError};
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};

/// The value of one of the container's labels.
pub fn label<'a>(found: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    found
        .config
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The container's state in the port's terms.
pub fn inspected_state(found: &ContainerInspectResponse) -> InstanceState {
    let Some(state) = found.state.as_ref() else {
        return InstanceState::Exited {
            exit_code: None,
            oom_killed: false,
        };
    };
    match state.status {
        Some(ContainerStateStatusEnum::CREATED) => InstanceState::Created,
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::STOPPING,
        ) => InstanceState::Running,
        _ => InstanceState::Exited {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
        },
    }
}

/// `http://127.0.0.1:<host port>/mcp` for the container port the catalog entry names.
pub fn http_endpoint(found: &ContainerInspectResponse) -> Result<String, RuntimeError> {
    let ports = found
        .network_settings
        .as_ref()
        .and_then(|settings| settings.ports.as_ref());
    let host_port = ports
        .into_iter()
        .flatten()
        .filter_map(|(_, bindings)| bindings.as_ref())
        .flatten()
        .filter(|binding| {
            binding
                .host_ip
                .as_deref()
                .is_none_or(|ip| ip == "127.0.0.1" || ip.is_empty())
        })
        .find_map(|binding| binding.host_port.as_deref().filter(|port| !port.is_empty()));
    host_port
        .map(|port| format!("http://127.0.0.1:{port}/mcp"))
        .ok_or_else(|| {
            RuntimeError::Failed("the container publishes no port; is it an http server?".into())
        })
}
