//! Active health checks: one task per upstream sends `GET <path>` to every endpoint on an
//! interval and tells the cluster the verdicts, so an instance that is up but sick is left out
//! before client calls find out the hard way.
//!
//! The task holds only a weak reference: it ends when the upstream (the gateway) is dropped.

use std::sync::{Arc, Weak};

use axum::body::Body;
use http::Request;
use tokio::time::MissedTickBehavior;

use super::{cluster::Cluster, http::HttpClient};
use crate::config::ConfigError;

/// Starts the checks of `cluster` on the current runtime.
pub(super) fn spawn(cluster: &Arc<Cluster>, client: HttpClient) -> Result<(), ConfigError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::Invalid {
        key: format!("upstreams.{}.health_check", cluster.name()),
        message: "health checks run on a Tokio runtime: build the gateway inside one".into(),
    })?;
    runtime.spawn(run(Arc::downgrade(cluster), client));
    Ok(())
}

async fn run(cluster: Weak<Cluster>, client: HttpClient) {
    let Some(config) = cluster.upgrade().and_then(|c| c.policy().health_check.clone()) else {
        return;
    };
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(cluster) = cluster.upgrade() else { return };
        let endpoints = cluster.snapshot();
        let checks = endpoints.iter().map(|endpoint| {
            let request = Request::get(format!("{}{}", endpoint.url(), config.path))
                .header("user-agent", "portico-health-check")
                .body(Body::empty());
            let client = &client;
            async move {
                let Ok(request) = request else { return false };
                matches!(
                    tokio::time::timeout(config.timeout, client.request(request)).await,
                    Ok(Ok(response)) if response.status().is_success()
                )
            }
        });
        let verdicts = futures::future::join_all(checks).await;
        for (endpoint, passed) in endpoints.iter().zip(verdicts) {
            cluster.health_checked(endpoint, passed);
        }
    }
}
