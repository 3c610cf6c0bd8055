//! The stop of an unattended run: SIGTERM (systemd), SIGINT (Ctrl-C), SIGHUP.

/// Listen for SIGTERM (systemd's stop), SIGINT (Ctrl-C) and SIGHUP: the first asks the run to
/// stop gracefully, the second ends it at once.
pub(crate) async fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot listen for signals: a stop will end the run at once");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!(
        "tend: {name}: finishing the resources in flight (dpkg and apt are waited for), ending \
         the commands it started, starting nothing new; a second signal stops at once"
    );
    tend_resources::process::request_stop();
    let again = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!("tend: second signal ({again}): stopping now; this run's report is not written");
    tend_resources::process::kill_all();
    std::process::exit(4);
}
