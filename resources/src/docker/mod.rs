//! The Docker kinds: [`compose`] stacks, and single [`container`]s, [`image`]s, [`volume`]s and
//! [`network`]s, all over the Docker API (bollard).
//!
//! One connection per run, made on first use: `DOCKER_HOST` when set, else the local socket. The
//! API version is negotiated, so an older engine (Debian's 20.10 speaks 1.41) is spoken to in its
//! own version. An engine that cannot be reached is a failure of each Docker resource that names
//! the address, never of the run: resources that do not need Docker still converge, and in a plan
//! where the package installing Docker would change first, the engine's absence is "may change".

pub(crate) mod compose;
mod compose_cli;
mod compose_files;
pub(crate) mod container;
mod context;
pub(crate) mod image;
mod named;
pub(crate) mod network;
pub(crate) mod volume;

use std::collections::HashMap;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::resource::ResourceError;

static ENGINE: OnceCell<Result<Docker, String>> = OnceCell::const_new();

/// Where the engine is expected, as the operator would write it.
pub(crate) fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// The run's connection to the engine.
pub(crate) async fn engine() -> Result<&'static Docker, ResourceError> {
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
    conn.as_ref().map_err(|e| ResourceError::Docker(e.clone()))
}

/// A Docker API error in words for the operator: the engine's own message when it gave one.
pub(crate) fn api_error(what: &str, e: bollard::errors::Error) -> ResourceError {
    use bollard::errors::Error as E;
    let why = match &e {
        E::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ResourceError::Docker(format!("{what}: {why}"))
}

/// Whether the API said "no such object" (404).
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Filters for list calls: `{"label": ["k=v"]}`.
pub(crate) fn label_filter(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

/// The labels a resource declares that are missing or different on the object.
pub(crate) fn labels_differ(
    declared: &[(String, String)],
    actual: Option<&HashMap<String, String>>,
) -> Vec<String> {
    declared
        .iter()
        .filter(|(k, v)| actual.and_then(|a| a.get(k)) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Run `argv` in a running container (API exec); its exit status and its output (stdout and
/// stderr interleaved).
pub(crate) async fn exec_in(
    container: &str,
    argv: &[String],
) -> Result<(Option<i64>, String), ResourceError> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt;
    let docker = engine().await?;
    let shown = argv.join(" ");
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| api_error(&format!("cannot run {shown} in {container}"), e))?;
    let mut said = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| api_error(&format!("cannot run {shown} in {container}"), e))?
    {
        while let Some(Ok(chunk)) = output.next().await {
            said.push_str(&chunk.to_string());
        }
    }
    let status = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| api_error("cannot read the command's status", e))?
        .exit_code;
    Ok((status, said))
}
