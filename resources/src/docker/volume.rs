//! `volume`: a named Docker volume, present with a driver and labels, or absent. An existing
//! volume that differs is never recreated by tend: that would delete its data.

use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::VolumeCreateRequest;

use super::named::Named;
use crate::change::Drift;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `volume` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "volume",
    summary: "a Docker volume present (driver, labels) or absent",
    build,
    prune: None,
};

#[derive(Debug)]
/// A `volume` resource, as its manifest table declared it.
pub(crate) struct Volume(Named);

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    Ok(Arc::new(Volume(Named::from_fields(f)?)))
}

#[async_trait]
impl Resource for Volume {
    async fn check(&self, _host: &Probe) -> Result<Drift, ResourceError> {
        let docker = super::engine().await?;
        let v = &self.0;
        let found = match docker.inspect_volume(&v.name).await {
            Ok(vol) => Some(vol),
            Err(e) if super::is_not_found(&e) => None,
            Err(e) => {
                return Err(super::api_error(
                    &format!("cannot inspect volume {}", v.name),
                    e,
                ))
            }
        };
        let drift = v.drift(
            "volume",
            found.as_ref().map(|f| (f.driver.as_str(), Some(&f.labels))),
        );
        if found.is_some() && Named::needs_recreate(&drift) {
            return Err(v.refuse("volume", "recreating it would delete its data"));
        }
        Ok(drift)
    }

    async fn apply(&self, _host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let docker = super::engine().await?;
        let v = &self.0;
        if v.present {
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(v.name.clone()),
                    driver: v.driver.clone(),
                    labels: Some(v.labels_map()),
                    ..Default::default()
                })
                .await
                .map_err(|e| super::api_error(&format!("cannot create volume {}", v.name), e))?;
        } else {
            docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
                .map_err(|e| super::api_error(&format!("cannot remove volume {}", v.name), e))?;
        }
        Ok(Applied::default())
    }
}
