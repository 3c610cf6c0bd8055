//! `network`: a Docker network, present with a driver and labels, or absent. A network that
//! differs is recreated only while no container is attached to it.

use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{NetworkCreateRequest, NetworkInspect};

use super::named::Named;
use crate::change::Drift;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `network` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "network",
    summary: "a Docker network present (driver, labels) or absent",
    build,
    prune: None,
};

#[derive(Debug)]
/// A `network` resource, as its manifest table declared it.
pub(crate) struct Network(Named);

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    Ok(Arc::new(Network(Named::from_fields(f)?)))
}

impl Network {
    async fn inspect(&self) -> Result<Option<NetworkInspect>, ResourceError> {
        let docker = super::engine().await?;
        match docker.inspect_network(&self.0.name, None).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(super::api_error(
                &format!("cannot inspect network {}", self.0.name),
                e,
            )),
        }
    }

    /// Names of the containers attached, which removing the network would cut off.
    fn attached(n: &NetworkInspect) -> Vec<String> {
        n.containers
            .iter()
            .flatten()
            .map(|(id, e)| e.name.clone().unwrap_or_else(|| id.clone()))
            .collect()
    }
}

#[async_trait]
impl Resource for Network {
    async fn check(&self, _host: &Probe) -> Result<Drift, ResourceError> {
        let n = &self.0;
        let found = self.inspect().await?;
        let drift = n.drift(
            "network",
            found
                .as_ref()
                .map(|f| (f.driver.as_deref().unwrap_or(""), f.labels.as_ref())),
        );
        if let Some(f) = &found {
            let attached = Network::attached(f);
            if !attached.is_empty() && (Named::needs_recreate(&drift) || !n.present) {
                return Err(n.refuse(
                    "network",
                    &format!("containers are attached to it ({})", attached.join(", ")),
                ));
            }
        }
        Ok(drift)
    }

    async fn apply(&self, _host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let docker = super::engine().await?;
        let n = &self.0;
        let exists = self.inspect().await?.is_some();
        if exists && (!n.present || Named::needs_recreate(drift)) {
            docker
                .remove_network(&n.name)
                .await
                .map_err(|e| super::api_error(&format!("cannot remove network {}", n.name), e))?;
        }
        if n.present {
            docker
                .create_network(NetworkCreateRequest {
                    name: n.name.clone(),
                    driver: n.driver.clone(),
                    labels: Some(n.labels_map()),
                    ..Default::default()
                })
                .await
                .map_err(|e| super::api_error(&format!("cannot create network {}", n.name), e))?;
        }
        Ok(Applied::default())
    }
}
