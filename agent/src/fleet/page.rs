//! The fleet as one self-contained static HTML page: hosts × status at a glance (counts and a
//! bar per host), stale hosts and hosts on an old policy commit flagged, each host's resources
//! that are not in sync with their field changes and diffs, and filters by status, kind,
//! resource, host and policy commit.
//!
//! Rendered here, every text escaped: the page never executes text from a report (a resource
//! named `<img onerror=…>` is text). Its script (plain, inline, no CDN: the page opens offline)
//! only shows and hides rows; the filters also read and write the URL's fragment
//! (`#status=failed&kind=file`), so a link names a view.

use std::fmt::Write;

use super::{Fleet, Host};

/// Changes shown per resource, diff text per change, resources per host: a page for 2,000 hosts
/// stays a few megabytes whatever a report holds (the report has the rest).
const MAX_CHANGES: usize = 20;
const MAX_DIFF: usize = 4096;
const MAX_RESOURCES: usize = 200;

/// `s` as HTML text or attribute value.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}\n… ({} more bytes)", &s[..i], s.len() - i),
        None => s.to_string(),
    }
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
table{border-collapse:collapse}
th,td{padding:.2em .6em;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:flex;width:160px;height:12px;background:#e8f5e9}
.bar span{display:block;height:12px}
.s-failed{background:#d32f2f}.s-drift{background:#f9a825}.s-changed{background:#1976d2}.s-unknown{background:#9e9e9e}
.flag{color:#b71c1c;font-weight:600}
#filters{margin:1em 0;display:flex;gap:1em;flex-wrap:wrap}
section.host{margin:1em 0;border-top:2px solid #ddd;padding-top:.5em}
pre{background:#f6f6f6;padding:.4em;overflow:auto;max-height:20em;margin:.2em 0}
.hidden{display:none}
.status{font-weight:600}
"#;

const SCRIPT: &str = r#"
(function(){
  var ids=['status','kind','resource','host','commit'];
  function get(id){return document.getElementById('f-'+id).value;}
  function apply(){
    var f={};ids.forEach(function(i){f[i]=get(i);});
    var shown=0;
    document.querySelectorAll('section.host').forEach(function(sec){
      var hostOk=(!f.host||sec.dataset.host.indexOf(f.host)>=0)&&(!f.commit||sec.dataset.commit===f.commit);
      var any=false;
      sec.querySelectorAll('tr.res').forEach(function(tr){
        var ok=hostOk&&(!f.status||tr.dataset.status===f.status)&&(!f.kind||tr.dataset.kind===f.kind)&&(!f.resource||tr.dataset.resource.indexOf(f.resource)>=0);
        tr.classList.toggle('hidden',!ok);if(ok){any=true;}
      });
      var noFilter=!f.status&&!f.kind&&!f.resource;
      var vis=hostOk&&(any||noFilter);
      var det=sec.querySelector('details');
      if(det){det.open=vis&&!noFilter;}
      sec.classList.toggle('hidden',!vis);
      var row=document.getElementById('row-'+sec.dataset.index);
      if(row){row.classList.toggle('hidden',!vis);}
      if(vis){shown++;}
    });
    document.getElementById('shown').textContent=String(shown);
    var h=[];ids.forEach(function(i){if(f[i]){h.push(i+'='+encodeURIComponent(f[i]));}});
    history.replaceState(null,'',h.length?'#'+h.join('&'):location.pathname);
  }
  function load(){
    location.hash.replace(/^#/,'').split('&').forEach(function(kv){
      var p=kv.split('=');if(ids.indexOf(p[0])>=0){document.getElementById('f-'+p[0]).value=decodeURIComponent(p[1]||'');}
    });
  }
  ids.forEach(function(i){var e=document.getElementById('f-'+i);e.addEventListener('input',apply);e.addEventListener('change',apply);});
  // Unfiltered, the page is as rendered: nothing to hide, no pass over every row.
  load();if(ids.some(function(i){return get(i);})){apply();}
})();
"#;

/// The page.
pub(crate) fn render(fleet: &Fleet) -> String {
    let mut out = String::with_capacity(64 * 1024 + fleet.hosts.len() * 2048);
    let hosts = fleet.hosts.len();
    let failing = fleet
        .hosts
        .iter()
        .filter(|h| h.counts.failed > 0 || h.error.is_some())
        .count();
    let drifting = fleet.hosts.iter().filter(|h| h.counts.drift > 0).count();
    let stale = fleet.hosts.iter().filter(|h| h.stale).count();
    let old = fleet.hosts.iter().filter(|h| h.old_policy).count();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tend fleet: {hosts} hosts</title><style>{STYLE}</style></head><body>\n<h1>tend fleet</h1>\n<p id=\"summary\"><span id=\"hosts\">{hosts}</span> hosts (<span id=\"shown\">{hosts}</span> shown): <span id=\"failing\">{failing}</span> failing, <span id=\"drifting\">{drifting}</span> drifting, <span id=\"stale\">{stale}</span> stale, <span id=\"old-policy\">{old}</span> on an old policy commit{}.</p>\n",
        fleet
            .policy_commit
            .as_ref()
            .map(|c| format!(" (most run <code>{}</code>)", esc(c)))
            .unwrap_or_default()
    );
    // Filter choices from the data.
    let mut statuses = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut commits = std::collections::BTreeSet::new();
    for h in &fleet.hosts {
        for r in &h.resources {
            statuses.insert(r["status"].as_str().unwrap_or_default().to_string());
            kinds.insert(r["kind"].as_str().unwrap_or_default().to_string());
        }
        if !h.orphans.is_empty() {
            statuses.insert("orphan".to_string());
        }
        if let Some(c) = &h.policy_commit {
            commits.insert(c.clone());
        }
    }
    let select = |id: &str, label: &str, values: &std::collections::BTreeSet<String>| {
        let mut s = format!("<label>{label} <select id=\"f-{id}\"><option value=\"\">all</option>");
        for v in values {
            let _ = write!(s, "<option value=\"{0}\">{0}</option>", esc(v));
        }
        s.push_str("</select></label>");
        s
    };
    let _ = writeln!(
        out,
        "<div id=\"filters\">{}{}<label>resource <input id=\"f-resource\" placeholder=\"file.motd\"></label><label>host <input id=\"f-host\"></label>{}</div>",
        select("status", "status", &statuses),
        select("kind", "kind", &kinds),
        select("commit", "policy commit", &commits)
    );
    out.push_str("<table id=\"hosts\"><thead><tr><th>host</th><th>mode</th><th>exit</th><th></th><th>failed</th><th>drift</th><th>changed</th><th>unknown</th><th>orphans</th><th>in sync</th><th>age</th><th>policy</th></tr></thead><tbody>\n");
    for (i, h) in fleet.hosts.iter().enumerate() {
        host_row(&mut out, i, h);
    }
    out.push_str("</tbody></table>\n");
    for (i, h) in fleet.hosts.iter().enumerate() {
        host_section(&mut out, i, h);
    }
    if !fleet.refused.is_empty() {
        out.push_str("<h2>Reports not read</h2><ul id=\"refused\">");
        for r in &fleet.refused {
            let _ = write!(out, "<li>{}: {}</li>", esc(&r.file), esc(&r.why));
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn host_row(out: &mut String, i: usize, h: &Host) {
    let c = &h.counts;
    let total = (c.total.max(1)) as f64;
    let w = |n: u64| (n as f64 / total * 160.0).round() as u64;
    let commit = h
        .policy_commit
        .as_deref()
        .map(|c| {
            let short = esc(&c[..c.len().min(12)]);
            if h.old_policy {
                format!("<span class=\"flag\" title=\"not the commit most hosts run\">{short} old</span>")
            } else {
                short
            }
        })
        .unwrap_or_else(|| "-".into());
    let stale = if h.stale {
        " <span class=\"flag\">stale</span>"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<tr id=\"row-{i}\" class=\"hostrow\"><td><a href=\"#host-{i}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td><div class=\"bar\"><span class=\"s-failed\" style=\"width:{}px\"></span><span class=\"s-drift\" style=\"width:{}px\"></span><span class=\"s-changed\" style=\"width:{}px\"></span><span class=\"s-unknown\" style=\"width:{}px\"></span></div></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}{stale}</td><td>{commit}</td></tr>",
        esc(&h.host),
        esc(&h.mode),
        h.exit_code,
        w(c.failed),
        w(c.drift),
        w(c.changed),
        w(c.unknown),
        c.failed,
        c.drift,
        c.changed,
        c.unknown,
        c.orphans,
        c.in_sync,
        age(h.age_seconds),
    );
}

fn host_section(out: &mut String, i: usize, h: &Host) {
    let _ = write!(
        out,
        "<section class=\"host\" id=\"host-{i}\" data-index=\"{i}\" data-host=\"{}\" data-commit=\"{}\"><h2>{}</h2><p>{} report of {} ({}), exit {}</p>",
        esc(&h.host),
        esc(h.policy_commit.as_deref().unwrap_or_default()),
        esc(&h.host),
        esc(&h.mode),
        esc(&h.started_at),
        esc(&h.file),
        h.exit_code
    );
    if let Some(e) = &h.error {
        let _ = write!(out, "<p class=\"flag\">could not start: {}</p>", esc(e));
    }
    if h.resources.is_empty() && h.orphans.is_empty() {
        out.push_str("<p>everything in sync</p></section>\n");
        return;
    }
    // Folded until a filter or a click opens it: 2,000 hosts' tables are not laid out at load.
    let _ = write!(
        out,
        "<details><summary>{} not in sync</summary><table class=\"resources\"><thead><tr><th>resource</th><th>status</th><th>what</th></tr></thead><tbody>",
        h.resources.len() + h.orphans.len()
    );
    for r in h.resources.iter().take(MAX_RESOURCES) {
        let s = |k: &str| r[k].as_str().unwrap_or_default();
        let mut what = String::new();
        if let Some(e) = r["error"].as_str().or(r["reason"].as_str()) {
            let _ = write!(what, "<div>{}</div>", esc(&cut(e, MAX_DIFF)));
        }
        for c in r["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .take(MAX_CHANGES)
        {
            let desc = c["description"].as_str().unwrap_or_default();
            let field = c["field"].as_str().unwrap_or_default();
            let _ = write!(what, "<div><b>{}</b> {}</div>", esc(field), esc(desc));
            if let Some(d) = c["diff"].as_str() {
                let _ = write!(what, "<pre class=\"diff\">{}</pre>", esc(&cut(d, MAX_DIFF)));
            }
        }
        let _ = write!(
            out,
            "<tr class=\"res\" data-status=\"{0}\" data-kind=\"{1}\" data-resource=\"{2}\"><td>{2}</td><td class=\"status\">{0}</td><td>{what}</td></tr>",
            esc(s("status")),
            esc(s("kind")),
            esc(s("address")),
        );
    }
    if h.resources.len() > MAX_RESOURCES {
        let _ = write!(
            out,
            "<tr><td colspan=\"3\">… {} more in {}</td></tr>",
            h.resources.len() - MAX_RESOURCES,
            esc(&h.file)
        );
    }
    for o in &h.orphans {
        let s = |k: &str| o[k].as_str().unwrap_or_default();
        let paths: Vec<&str> = o["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        let _ = write!(
            out,
            "<tr class=\"res\" data-status=\"orphan\" data-kind=\"{0}\" data-resource=\"{1}\"><td>{1}</td><td class=\"status\">orphan</td><td>no longer in the manifest: {2} left in place</td></tr>",
            esc(s("kind")),
            esc(s("address")),
            esc(&paths.join(", "))
        );
    }
    out.push_str("</tbody></table></details></section>\n");
}
