//! `group`: a group with its gid and members (exactly these, or at least these), or its absence.

use std::sync::Arc;

use async_trait::async_trait;

use super::{check_name, db, tool};
use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `group` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "group",
    summary: "a group: gid, members (exact or added), or absent",
    build,
    prune: None,
};

/// Which members the manifest gives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Members {
    /// Not managed.
    Any,
    /// Exactly these.
    Exact(Vec<String>),
    /// At least these.
    Add(Vec<String>),
}

/// A `group` resource, as its manifest table declared it.
#[derive(Debug)]
pub(crate) struct GroupRes {
    name: String,
    gid: Option<u32>,
    system: bool,
    members: Members,
    present: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (name, span) = f.required_string("name")?;
    check_name(&span, "group", &name.value)?;
    let gid = match f.int("gid")? {
        Some((n, span)) => Some(u32::try_from(n).ok().filter(|g| *g < u32::MAX).ok_or_else(
            || SpecError::new(span, format!("gid {n} is out of range (0 to 4294967294)")),
        )?),
        None => None,
    };
    let system = f.bool("system")?.unwrap_or(false);
    let members = match f.at_most_one(&["members", "members_add"])? {
        Some("members") => Members::Exact(f.string_list("members")?),
        Some(_) => Members::Add(f.string_list("members_add")?),
        None => Members::Any,
    };
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    Ok(Arc::new(GroupRes {
        name: name.value,
        gid,
        system,
        members,
        present,
    }))
}

impl GroupRes {
    /// The members it must have, given the current ones (sorted, deduplicated).
    fn wanted_members(&self, now: &[String]) -> Option<Vec<String>> {
        let mut want = match &self.members {
            Members::Any => return None,
            Members::Exact(m) => m.clone(),
            Members::Add(m) => now.iter().chain(m).cloned().collect(),
        };
        want.sort();
        want.dedup();
        Some(want)
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

#[async_trait]
impl Resource for GroupRes {
    fn provides(&self) -> Vec<String> {
        vec![format!("group:{}", self.name)]
    }

    fn needs(&self) -> Vec<String> {
        match &self.members {
            Members::Any => Vec::new(),
            Members::Exact(m) | Members::Add(m) => m.iter().map(|u| format!("user:{u}")).collect(),
        }
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let groups = db::groups(host)?;
        if self.present {
            if let Members::Exact(m) | Members::Add(m) = &self.members {
                let users = db::passwd(host)?;
                if let Some(u) = m.iter().find(|u| !users.iter().any(|x| &x.name == *u)) {
                    return Err(ResourceError::Missing(format!(
                        "member user {u} does not exist"
                    )));
                }
            }
        }
        let found = groups.iter().find(|g| g.name == self.name);
        if let Some(gid) = self.gid {
            if let Some(other) = groups.iter().find(|g| g.gid == gid && g.name != self.name) {
                if self.present {
                    return Err(ResourceError::Refused(format!(
                        "gid {gid} belongs to group {}; group {} cannot have it",
                        other.name, self.name
                    )));
                }
            }
        }
        match (found, self.present) {
            (None, false) => {}
            (Some(_), false) => drift.push(Change::removed("state", "present").described("remove")),
            (None, true) => {
                let mut what = String::from("create");
                if let Some(g) = self.gid {
                    what.push_str(&format!(" (gid {g})"));
                }
                if let Some(m) = self.wanted_members(&[]).filter(|m| !m.is_empty()) {
                    what.push_str(&format!(" with members {}", m.join(", ")));
                }
                drift.push(Change::created("state", "present").described(what));
            }
            (Some(g), true) => {
                if let Some(want) = self.gid.filter(|w| *w != g.gid) {
                    drift.push(Change::new(
                        "gid",
                        Some(g.gid.to_string()),
                        Some(want.to_string()),
                    ));
                }
                if let Some(want) = self.wanted_members(&g.members) {
                    let now = sorted(&g.members);
                    if want != now {
                        drift.push(Change::new(
                            "members",
                            Some(now.join(", ")),
                            Some(want.join(", ")),
                        ));
                    }
                }
            }
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        if !self.present {
            tool(host, "groupdel", std::slice::from_ref(&self.name), None).await?;
            return Ok(Applied::default());
        }
        let now = db::groups(host.probe())?
            .into_iter()
            .find(|g| g.name == self.name);
        let members = self.wanted_members(now.as_ref().map_or(&[][..], |g| &g.members));
        let mut args: Vec<String> = Vec::new();
        let program = match now {
            None => {
                if let Some(g) = self.gid {
                    args.extend(["--gid".into(), g.to_string()]);
                }
                if let Some(m) = members.filter(|m| !m.is_empty()) {
                    args.extend(["--users".into(), m.join(",")]);
                }
                if self.system {
                    args.push("--system".into());
                }
                "groupadd"
            }
            Some(_) => {
                if let (true, Some(g)) = (drift.touches("gid"), self.gid) {
                    args.extend(["--gid".into(), g.to_string()]);
                }
                if let (true, Some(m)) = (drift.touches("members"), members) {
                    args.extend(["--users".into(), m.join(",")]);
                }
                if args.is_empty() {
                    return Ok(Applied::default());
                }
                "groupmod"
            }
        };
        args.push(self.name.clone());
        tool(host, program, &args, None).await?;
        Ok(Applied::default())
    }
}
