//! Running a command to completion with its output captured: both pipes are read at once (a
//! command that fills stderr must not block on it), within a time limit after which the command
//! is killed. `exec` commands and the compose CLI both run this way.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How a command ended, and what it printed.
pub struct Captured {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
pub enum RunError {
    /// It could not be started (not found, not executable).
    Spawn(std::io::Error),
    /// It ran past the limit and was killed.
    Timeout,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Run `c` (stdin from /dev/null) and collect its output.
pub async fn capture(
    mut c: tokio::process::Command,
    timeout: Duration,
) -> Result<Captured, RunError> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(RunError::Spawn)?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let collect = async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (a, b, status)
    };
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(RunError::Timeout),
        Ok((stdout, stderr, status)) => Ok(Captured {
            status: status.map_err(RunError::Wait)?,
            stdout,
            stderr,
        }),
    }
}
