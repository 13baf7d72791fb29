//! The real [`EcsConnector`]: signed HTTP clients, one per credential set, all sharing one set
//! of connections and rate-limit buckets; with batching on, each wrapped in [`BatchingEcs`] and
//! observed fleet by fleet by a [`FleetObserver`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::controller::config::{BatchSettings, Config};
use crate::controller::ecs::batch::BatchingEcs;
use crate::controller::ecs::call_metrics::CountingEcs;
use crate::controller::ecs::fleet::{FleetObserver, FleetSettings};
use crate::controller::ecs::observe::{
    DirectObserver, EcsConnector, EcsSide, Observer, credentials_key,
};
use crate::telemetry::Metrics;
use ecs_client::client::EcsClient;
use ecs_client::credentials::StaticProvider;
use ecs_client::{Credentials, EcsApi};

/// Rotated Secrets leave old entries behind; past this many the cache starts over.
const MAX_CACHED_CLIENTS: usize = 1024;

pub(crate) struct ClientConnector {
    /// Signs with the controller's own credential chain; the others derive from it.
    base: EcsClient,
    metrics: Metrics,
    /// `Some`: single mutations are coalesced into batch calls.
    batch: Option<BatchSettings>,
    /// `Some`: power calls are noted by the fleet observer.
    fleet: Option<Arc<FleetObserver>>,
    clients: Mutex<HashMap<String, Arc<dyn EcsApi>>>,
}

impl ClientConnector {
    pub(crate) fn new(base: EcsClient, metrics: Metrics) -> Self {
        Self {
            base,
            metrics,
            batch: None,
            fleet: None,
            clients: Mutex::default(),
        }
    }

    /// Coalesces single Start/Stop/Reboot calls into batch calls (`None`: one call each).
    pub(crate) fn with_batch(mut self, batch: Option<BatchSettings>) -> Self {
        self.batch = batch;
        self
    }
}

/// The ECS side of a controller: the connector, and with batching on (`config.batch`) the
/// fleet observer; with it off, one DescribeInstances per look.
pub(crate) fn ecs_side(base: EcsClient, metrics: Metrics, config: &Config) -> EcsSide {
    let mut connector = ClientConnector::new(base, metrics).with_batch(config.batch);
    let observer: Arc<dyn Observer> = match config.batch {
        Some(settings) => {
            let fleet = Arc::new(FleetObserver::new(FleetSettings::new(config, settings)));
            connector.fleet = Some(fleet.clone());
            fleet
        }
        None => Arc::new(DirectObserver),
    };
    EcsSide {
        connector: Arc::new(connector),
        observer,
    }
}

impl EcsConnector for ClientConnector {
    fn connect(&self, credentials: Option<&Credentials>) -> Arc<dyn EcsApi> {
        let key = credentials_key(credentials);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return client.clone();
        }
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        let client = match credentials {
            Some(c) => self
                .base
                .with_credentials(Arc::new(StaticProvider(c.clone()))),
            None => self.base.clone(),
        };
        // Metered inside the batching layer: the metrics count the calls ECS actually sees.
        let counted: Arc<dyn EcsApi> =
            Arc::new(CountingEcs::new(Arc::new(client), self.metrics.clone()));
        let api: Arc<dyn EcsApi> = match self.batch {
            Some(settings) => Arc::new(BatchingEcs::new(counted, settings)),
            None => counted,
        };
        let api = match &self.fleet {
            Some(fleet) => Arc::new(fleet.invalidating(api, key.clone())),
            None => api,
        };
        clients.insert(key, api.clone());
        api
    }
}
