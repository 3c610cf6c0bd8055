//! `tend data [KEY] [--explain]`: the merged `[data]` layers, or where each value came from.

use crate::cli::DataArgs;
use crate::secrets::SecretMode;
use crate::{load, manifest, output, StartError};

pub(crate) fn run(args: &DataArgs) -> Result<i32, StartError> {
    let m = load(&args.manifest, SecretMode::Ephemeral, None, None)?;
    let Some(data) = &m.data else {
        return Err(StartError::Usage(format!(
            "{} has no [data] layers",
            m.path.display()
        )));
    };
    let key = args.key.as_deref();
    let text = if args.explain {
        manifest::data::explain(data, key)
    } else {
        let shown = manifest::data::redacted(data);
        let value = match key {
            Some(k) => manifest::data::lookup(&shown, k)
                .cloned()
                .ok_or_else(|| StartError::Usage(format!("the data has no key `{k}`")))?,
            None => shown,
        };
        serde_json::to_string_pretty(&value).map_err(|e| StartError::Host(e.to_string()))? + "\n"
    };
    output::stdout(&text);
    Ok(0)
}
