//! Graph: explicit edges (`requires`, `notify`) and automatic ones (a path inside a directory
//! or checkout another resource manages), a topological order, and cycle errors that print the
//! cycle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tend_resources::spec::Span;

use crate::manifest::{Diagnostic, LoadError, Manifest};

/// Why one resource waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// The dependent's `requires` names it.
    Requires,
    /// It `notify`s the dependent: the refresh comes after the change.
    Notify,
    /// The dependent's path lies inside the dependency's.
    Path,
}

/// One dependency of a node.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The node depended on.
    pub on: usize,
    /// Why it is there.
    pub kind: EdgeKind,
    span: Option<Span>,
}

/// The manifest's resources as a dependency graph: nodes are indexes into `resources`.
#[derive(Debug)]
pub struct Graph {
    /// `deps[i]`: what node `i` waits for.
    pub deps: Vec<Vec<Edge>>,
    /// `notifies[i]`: the nodes whose refresh node `i` triggers when it changes.
    pub notifies: Vec<Vec<usize>>,
    /// Every node, dependencies first; ties keep manifest order.
    pub order: Vec<usize>,
}

impl Graph {
    /// The graph of `m`: explicit edges, then the automatic ones that contradict none; a
    /// cycle, or two resources managing one path, is a located error.
    pub fn build(m: &Manifest) -> Result<Graph, LoadError> {
        let n = m.resources.len();
        let index: HashMap<&str, usize> = m
            .resources
            .iter()
            .enumerate()
            .map(|(i, d)| (d.address.as_str(), i))
            .collect();
        let mut deps: Vec<Vec<Edge>> = vec![Vec::new(); n];
        let mut notifies = vec![Vec::new(); n];
        for (i, d) in m.resources.iter().enumerate() {
            for (t, span) in &d.requires {
                deps[i].push(Edge {
                    on: index[t.as_str()],
                    kind: EdgeKind::Requires,
                    span: Some(span.clone()),
                });
            }
            for (t, span) in &d.notify {
                let j = index[t.as_str()];
                deps[j].push(Edge {
                    on: i,
                    kind: EdgeKind::Notify,
                    span: Some(span.clone()),
                });
                notifies[i].push(j);
            }
        }
        let mut diags = Vec::new();
        if let Some(cycle) = find_cycle(&deps) {
            diags.push(cycle_diagnostic(m, &deps, &cycle));
            return Err(LoadError::Invalid(diags));
        }

        // Automatic edges, unless they would contradict an explicit one.
        // Hashed, not ordered: lookups per ancestor of every path, and ordered keys cost a
        // component-by-component comparison each (a quarter of a 1000-file plan before).
        let mut owners: HashMap<PathBuf, usize> = HashMap::new();
        for (i, d) in m.resources.iter().enumerate().filter(|(_, d)| d.enabled) {
            for p in d.resource.paths() {
                if let Some(&j) = owners.get(&p) {
                    let other = &m.resources[j];
                    diags.push(m.diagnostic(
                        d.span.clone(),
                        format!(
                            "{} manages {}, which {} manages too",
                            d.address,
                            p.display(),
                            other.address
                        ),
                        Some("a path belongs to one resource: merge the two or remove one".into()),
                    ));
                } else {
                    owners.insert(p, i);
                }
            }
        }
        // An edit of a file whose whole content another resource sets would be undone by it,
        // and undo it, on every run.
        for d in m.resources.iter().filter(|d| d.enabled) {
            for p in d.resource.edits() {
                if let Some(&j) = owners.get(&p) {
                    let owner = &m.resources[j];
                    if !owner.resource.shares_content() {
                        diags.push(m.diagnostic(
                            d.span.clone(),
                            format!(
                                "{} edits {}, whose whole content {} sets",
                                d.address,
                                p.display(),
                                owner.address
                            ),
                            Some(format!(
                                "the two would undo each other on every run: put the line in {}'s content, or let it manage only mode and owner",
                                owner.address
                            )),
                        ));
                    }
                }
            }
        }
        if !diags.is_empty() {
            return Err(LoadError::Invalid(diags));
        }
        let mut providers: HashMap<String, usize> = HashMap::new();
        for (i, d) in m.resources.iter().enumerate().filter(|(_, d)| d.enabled) {
            for name in d.resource.provides() {
                providers.entry(name).or_insert(i);
            }
        }
        for (i, d) in m.resources.iter().enumerate().filter(|(_, d)| d.enabled) {
            // A user after the groups it joins, a group after its member users — unless that
            // would close a circle (a user in a group that lists it), which explicit `requires`
            // can settle.
            for name in d.resource.needs() {
                if let Some(&j) = providers.get(&name).filter(|&&j| j != i) {
                    automatic_edge(&mut deps, i, j);
                }
            }
        }
        let mut last_editor: HashMap<PathBuf, usize> = HashMap::new();
        for (i, d) in m.resources.iter().enumerate().filter(|(_, d)| d.enabled) {
            // The editors of one file (a `line`, a `block`) run one after another, in manifest
            // order: each reads what the one before it wrote.
            for p in d.resource.edits() {
                if let Some(j) = last_editor.insert(p, i) {
                    automatic_edge(&mut deps, i, j);
                }
            }
            // A path a resource reads depends on its owner too (a compose project on its
            // `.env`), and so does one inside a directory or checkout another resource manages.
            let read = d.resource.reads().into_iter().map(|p| (p, 0));
            for (p, skip) in d.resource.paths().into_iter().map(|p| (p, 1)).chain(read) {
                let container = p.ancestors().skip(skip).find_map(|a| {
                    owners
                        .get(Path::new(a))
                        .copied()
                        .filter(|&j| j != i && (a == p || m.resources[j].resource.contains_paths()))
                });
                if let Some(j) = container {
                    automatic_edge(&mut deps, i, j);
                }
            }
        }
        let order = topo_order(&deps);
        Ok(Graph {
            deps,
            notifies,
            order,
        })
    }

    /// Every node `i` depends on, directly or not.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.deps.len()];
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            for e in &self.deps[x] {
                if !seen[e.on] {
                    seen[e.on] = true;
                    out.push(e.on);
                    stack.push(e.on);
                }
            }
        }
        out
    }

    /// The graph in Graphviz DOT: solid `requires`, dashed `notify`, dotted automatic edges.
    /// The graph in Graphviz DOT (addresses quoted: `file.site["a"]`).
    pub fn to_dot(&self, m: &Manifest) -> String {
        let mut s = String::from(
            "digraph tend {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for &i in &self.order {
            let d = &m.resources[i];
            let style = if d.enabled {
                ""
            } else {
                ", style=dashed, fontcolor=gray"
            };
            let id = dot_id(&d.address);
            s.push_str(&format!("  \"{id}\" [label=\"{id}\"{style}];\n"));
        }
        for &i in &self.order {
            for e in &self.deps[i] {
                let (a, b) = (
                    dot_id(&m.resources[e.on].address),
                    dot_id(&m.resources[i].address),
                );
                let attrs = match e.kind {
                    EdgeKind::Requires => "",
                    EdgeKind::Notify => " [style=dashed, label=\"notify\"]",
                    EdgeKind::Path => " [style=dotted, label=\"path\"]",
                };
                s.push_str(&format!("  \"{a}\" -> \"{b}\"{attrs};\n"));
            }
        }
        s.push_str("}\n");
        s
    }
}

fn reaches(deps: &[Vec<Edge>], from: usize, to: usize) -> bool {
    let mut seen = vec![false; deps.len()];
    let mut stack = vec![from];
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        for e in &deps[x] {
            if !seen[e.on] {
                seen[e.on] = true;
                stack.push(e.on);
            }
        }
    }
    false
}

/// Kahn's algorithm, always taking the lowest-numbered ready node, so ties keep manifest order.
fn topo_order(deps: &[Vec<Edge>]) -> Vec<usize> {
    let n = deps.len();
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for e in ds {
            dependents[e.on].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

/// A cycle as a list of nodes where each depends on the next and the last on the first.
fn find_cycle(deps: &[Vec<Edge>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    for start in 0..deps.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS keeping the path, so deep graphs cannot overflow the stack.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(e) = deps[node].get(*next) {
                *next += 1;
                match mark[e.on] {
                    Mark::New => {
                        mark[e.on] = Mark::Active;
                        path.push((e.on, 0));
                    }
                    Mark::Active => {
                        let pos = path.iter().position(|(n, _)| *n == e.on).unwrap_or(0);
                        return Some(path[pos..].iter().map(|(n, _)| *n).collect());
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

fn cycle_diagnostic(m: &Manifest, deps: &[Vec<Edge>], cycle: &[usize]) -> Diagnostic {
    let mut names: Vec<&str> = cycle
        .iter()
        .map(|&i| m.resources[i].address.as_str())
        .collect();
    names.push(names[0]);
    let first = cycle[0];
    let second = cycle.get(1).copied().unwrap_or(first);
    let span = deps[first]
        .iter()
        .find(|e| e.on == second)
        .and_then(|e| e.span.clone())
        .unwrap_or_else(|| m.resources[first].span.clone());
    m.diagnostic(
        span,
        format!("dependency cycle: {}", names.join(" → ")),
        Some("each arrow reads \"needs\" (requires, or notified by); remove one of them to break the cycle".into()),
    )
}

/// `i` after `j`, unless it already is or the reverse holds (an explicit edge wins; no cycle).
fn automatic_edge(deps: &mut [Vec<Edge>], i: usize, j: usize) {
    if !deps[i].iter().any(|e| e.on == j) && !reaches(deps, j, i) {
        deps[i].push(Edge {
            on: j,
            kind: EdgeKind::Path,
            span: None,
        });
    }
}

/// An address inside a DOT quoted id.
fn dot_id(address: &str) -> String {
    address.replace('\\', "\\\\").replace('"', "\\\"")
}
