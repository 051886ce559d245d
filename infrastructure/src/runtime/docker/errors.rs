//! Reading the engine's errors: refusals keep the engine's own words, transport failures
//! mean the engine is unavailable.

use berth_application::runtime::RuntimeError;
use bollard::errors::Error as EngineError;

/// The HTTP status of an engine refusal.
pub fn status(error: &EngineError) -> Option<u16> {
    match error {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps an engine error: refusals carry the engine's own words, transport failures mean
/// the engine is unavailable.
pub fn engine_error(doing: &str, error: EngineError) -> RuntimeError {
    match error {
        EngineError::DockerResponseServerError {
            message,
            status_code,
        } => {
            let message = if message.is_empty() {
                format!("status {status_code}")
            } else {
                message
            };
            RuntimeError::Failed(format!("{doing} failed: {message}"))
        }
        EngineError::RequestTimeoutError
        | EngineError::SocketNotFoundError(_)
        | EngineError::IOError { .. }
        | EngineError::HyperResponseError { .. }
        | EngineError::HttpClientError { .. } => {
            RuntimeError::Unavailable(format!("{doing} failed: {error}"))
        }
        other => RuntimeError::Failed(format!("{doing} failed: {other}")),
    }
}

/// What to tell a person when an image is neither present nor pullable.
pub fn image_unavailable(image: &str, error: &EngineError) -> RuntimeError {
    let cause = match error {
        EngineError::DockerResponseServerError { message, .. } => message.clone(),
        EngineError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    RuntimeError::ImageUnavailable {
        image: image.to_owned(),
        reason: format!(
            "it is not present locally and could not be pulled: {cause} (build or load it on \
             this machine, e.g. with `docker load`, or make its registry reachable)"
        ),
    }
}
