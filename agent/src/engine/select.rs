//! Which resources a run involves: `--only` and what the selected depend on.

use crate::engine::graph::Graph;
use crate::manifest::Manifest;

/// Which resources take part: `--only` selects some; their dependencies are checked, not applied.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// Selected for apply.
    pub selected: Vec<bool>,
    /// Selected or a dependency of a selected one.
    pub involved: Vec<bool>,
}

impl Selection {
    pub(crate) fn new(m: &Manifest, g: &Graph, only: &[String]) -> Result<Selection, String> {
        let n = m.resources.len();
        let mut selected = vec![only.is_empty(); n];
        for sel in only {
            let mut matched = false;
            for (i, d) in m.resources.iter().enumerate() {
                let hit = match sel.strip_prefix("tag:") {
                    Some(tag) => d.tags.iter().any(|t| t == tag),
                    // `file.site` selects each instance of a `for_each` too, `module.web` its resources.
                    None if sel.contains('.') => {
                        d.address == *sel
                            || d.address.strip_prefix(sel.as_str()).is_some_and(|rest| {
                                rest.starts_with("[\"") || rest.starts_with('.')
                            })
                    }
                    None => d.kind == sel,
                };
                if hit {
                    selected[i] = true;
                    matched = true;
                }
            }
            if !matched {
                let addresses: Vec<&str> = m.resources.iter().map(|d| d.address.as_str()).collect();
                let hint = tend_resources::spec::nearest(sel, addresses.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_else(|| {
                        "; selectors are an address (file.motd), a kind (file) or tag:NAME".into()
                    });
                return Err(format!(
                    "--only {sel} matches no resource in the manifest{hint}"
                ));
            }
        }
        for (i, d) in m.resources.iter().enumerate() {
            selected[i] &= d.enabled;
        }
        let mut involved = selected.clone();
        // Everything is selected: the ancestors of an enabled resource are all there already
        // (and walking them from each resource costs n² on a large manifest).
        if only.is_empty() {
            return Ok(Selection { selected, involved });
        }
        for i in (0..n).filter(|&i| selected[i]) {
            for a in g.ancestors(i) {
                involved[a] = m.resources[a].enabled;
            }
        }
        Ok(Selection { selected, involved })
    }
}
