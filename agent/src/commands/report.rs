//! `tend report fleet DIR...`: many hosts' reports as a table, JSON or one static page.

use crate::cli::{Cli, FleetArgs};
use crate::{fleet, output, StartError};

pub(crate) fn fleet(cli: &Cli, args: &FleetArgs) -> Result<i32, StartError> {
    let fleet = fleet::read(&args.dirs, args.stale_after);
    if let Some(out) = &args.html {
        let page = fleet::page::render(&fleet);
        // Written whole, then renamed: a web server serving the file never shows half.
        let tmp = out.with_extension("html.tmp");
        std::fs::write(&tmp, page.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, out))
            .map_err(|e| StartError::Host(format!("{}: {e}", out.display())))?;
        if !cli.quiet {
            output::stdout(&format!(
                "{}: {} hosts, {} reports not read
",
                out.display(),
                fleet.hosts.len(),
                fleet.refused.len()
            ));
        }
    } else if args.json {
        output::stdout(
            &(serde_json::to_string_pretty(&fleet).map_err(|e| StartError::Host(e.to_string()))?
                + "\n"),
        );
    } else {
        output::stdout(&fleet::table(&fleet));
    }
    Ok(if fleet.refused.is_empty() { 0 } else { 4 })
}
