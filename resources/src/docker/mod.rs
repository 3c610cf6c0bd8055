//! The Docker kinds: [`compose`] stacks, and single [`container`]s, [`image`]s, [`volume`]s and
//! [`network`]s, all over the Docker API (bollard).
//!
//! One connection per run, made on first use: `DOCKER_HOST` when set, else the local socket. The
//! API version is negotiated, so an older engine (Debian's 20.10 speaks 1.41) is spoken to in its
//! own version. An engine that cannot be reached is a failure of each Docker resource that names
//! the address, never of the run: resources that do not need Docker still converge, and in a plan
//! where the package installing Docker would change first, the engine's absence is "may change".

pub mod compose;
mod compose_cli;
mod compose_files;
pub mod container;
mod context;
pub mod image;
mod named;
pub mod network;
pub mod volume;

use std::collections::HashMap;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::resource::ResourceError;

static ENGINE: OnceCell<Result<Docker, String>> = OnceCell::const_new();

/// Where the engine is expected, as the operator would write it.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// The run's connection to the engine.
pub async fn engine() -> Result<&'static Docker, ResourceError> {
    let conn = ENGINE
        .get_or_init(|| async {
            let address = engine_address();
            let unreachable = |e: &dyn std::fmt::Display| {
                format!("Docker engine not reachable at {address}: {e}")
            };
            let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&e))?;
            docker
                .negotiate_version()
                .await
                .map_err(|e| unreachable(&e))
        })
        .await;
    conn.as_ref().map_err(|e| ResourceError::Failed(e.clone()))
}

/// A Docker API error in words for the operator: the engine's own message when it gave one.
pub fn api_error(what: &str, e: bollard::errors::Error) -> ResourceError {
    use bollard::errors::Error as E;
    let why = match &e {
        E::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ResourceError::Failed(format!("{what}: {why}"))
}

/// Whether the API said "no such object" (404).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Filters for list calls: `{"label": ["k=v"]}`.
pub fn label_filter(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

/// Labels as a sorted list of `k=v` lines, for comparing and showing.
pub fn show_labels(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The labels a resource declares that are missing or different on the object.
pub fn labels_differ(
    declared: &[(String, String)],
    actual: Option<&HashMap<String, String>>,
) -> Vec<String> {
    declared
        .iter()
        .filter(|(k, v)| actual.and_then(|a| a.get(k)) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}
