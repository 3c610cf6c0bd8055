//! What `volume` and `network` share: a named engine object that is present (with a driver and
//! labels) or absent. Neither can be changed in place: a difference is recreated when that is
//! safe, and refused with the reason when it would lose data or cut containers off.

use std::collections::HashMap;

use crate::change::{Change, Drift};
use crate::resource::ResourceError;
use crate::spec::{Fields, SpecError};

#[derive(Debug)]
pub(super) struct Named {
    pub name: String,
    pub present: bool,
    /// `None`: whatever the engine's default is.
    pub driver: Option<String>,
    pub labels: Vec<(String, String)>,
}

impl Named {
    pub(super) fn from_fields(f: &mut Fields<'_>) -> Result<Named, SpecError> {
        let (name, span) = f.required_string("name")?;
        if !crate::grammar::docker_object(&name.value) {
            return Err(SpecError::new(
                span,
                format!(
                    "{:?} is not a Docker object name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                    name.value
                ),
            ));
        }
        let present = f
            .choice("state", &["present", "absent"])?
            .unwrap_or("present")
            == "present";
        let driver = f.string("driver")?.map(|(t, _)| t.value);
        let labels = f.string_map("labels")?;
        Ok(Named {
            name: name.value,
            present,
            driver,
            labels,
        })
    }

    pub(super) fn labels_map(&self) -> HashMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    /// The drift of an object the engine described as `found` (driver, labels), or not at all.
    pub(super) fn drift(
        &self,
        what: &str,
        found: Option<(&str, Option<&HashMap<String, String>>)>,
    ) -> Drift {
        let mut drift = Drift::none();
        match (found, self.present) {
            (None, false) => {}
            (Some(_), false) => drift.push(
                Change::removed("state", "present")
                    .described(format!("remove {what} {}", self.name)),
            ),
            (None, true) => drift.push(
                Change::created("state", "present")
                    .described(format!("create {what} {}", self.name)),
            ),
            (Some((driver, labels)), true) => {
                if let Some(want) = self.driver.as_deref().filter(|w| *w != driver) {
                    drift.push(Change::new("driver", Some(driver), Some(want)));
                }
                let missing = super::labels_differ(&self.labels, labels);
                if !missing.is_empty() {
                    drift.push(Change::new(
                        "labels",
                        None::<String>,
                        Some(missing.join(", ")),
                    ));
                }
            }
        }
        drift
    }

    /// Whether the drift asks to recreate an existing object (driver or labels differ).
    pub(super) fn needs_recreate(drift: &Drift) -> bool {
        drift.touches("driver") || drift.touches("labels")
    }

    pub(super) fn refuse(&self, what: &str, why: &str) -> ResourceError {
        ResourceError::Refused(format!(
            "{what} {} exists with another driver or labels and {why}; remove it by hand (docker {what} rm {}) and tend will create it as declared",
            self.name, self.name
        ))
    }
}
