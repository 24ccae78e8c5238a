//! Readiness, for load balancers and orchestrators. The daemon is ready
//! once its start-up models are loaded and warmed up, and stops being ready
//! when it is told to stop, before it stops serving (the drain). It is
//! published through grpc.health.v1: the empty service name is the daemon,
//! each model's name is that model (SERVING while its requests are served),
//! and the inferd.v1 service names follow the daemon. The service
//! `liveness` is SERVING for as long as the process answers (a liveness
//! probe that must not fail during start-up or the drain).

use std::collections::BTreeMap;
use std::sync::Arc;

use inferd_proto::v1::{inference_server, models_server};
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::registry::Registry;

/// The health service name that says only that the process answers.
pub const LIVENESS: &str = "liveness";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading the start-up models: live, not ready.
    Starting,
    Serving,
    /// Told to stop: still serving, no longer ready.
    Draining,
    /// The listeners are closed: the health statuses are withdrawn (but
    /// liveness), which ends the clients' Watch streams, which a graceful
    /// shutdown would wait for.
    Closed,
}

/// The daemon's phase, shared by the health service and the other
/// protocols' readiness endpoints.
pub struct Readiness {
    phase: watch::Sender<Phase>,
}

impl Readiness {
    pub fn new() -> Arc<Self> {
        Arc::new(Readiness {
            phase: watch::Sender::new(Phase::Starting),
        })
    }

    /// The start-up models are loaded: ready, unless told to stop meanwhile.
    pub fn started(&self) {
        self.phase.send_if_modified(|phase| {
            let starting = *phase == Phase::Starting;
            if starting {
                *phase = Phase::Serving;
            }
            starting
        });
    }

    /// Told to stop: no longer ready.
    pub fn drain(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Whether a balancer should send requests here.
    pub fn is_ready(&self) -> bool {
        *self.phase.borrow() == Phase::Serving
    }

    /// Whether it has been told to stop.
    pub fn is_draining(&self) -> bool {
        matches!(*self.phase.borrow(), Phase::Draining | Phase::Closed)
    }

    /// The listeners are closing: health statuses are withdrawn.
    pub fn close(&self) {
        self.phase.send_replace(Phase::Closed);
    }

    /// What the health service says before the daemon listens: alive, not
    /// ready.
    pub async fn publish_first(health: &HealthReporter) {
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        health.set_service_status("", ServingStatus::NotServing).await;
    }

    /// Keeps the health service equal to the daemon's phase and to each
    /// model's readiness, for as long as the daemon runs.
    pub async fn publish(self: Arc<Self>, registry: Arc<Registry>, mut health: HealthReporter) {
        let mut phase = self.phase.subscribe();
        let mut models = registry.watch_readiness();
        let mut published: BTreeMap<String, bool> = BTreeMap::new();
        let mut published_phase = None;
        loop {
            let now = *phase.borrow_and_update();
            models.borrow_and_update();
            if now == Phase::Closed {
                for name in published.keys() {
                    health.clear_service_status(name).await;
                }
                // Liveness stays: probes Check it, nobody Watches it.
                for service in ["", inference_server::SERVICE_NAME, models_server::SERVICE_NAME] {
                    health.clear_service_status(service).await;
                }
                return;
            }
            let ready = now == Phase::Serving;
            if published_phase != Some(now) {
                let status = serving(ready);
                health.set_service_status("", status).await;
                for service in [inference_server::SERVICE_NAME, models_server::SERVICE_NAME] {
                    health.set_service_status(service, status).await;
                }
                published_phase = Some(now);
            }
            let current: BTreeMap<String, bool> = registry
                .readiness()
                .into_iter()
                // A model named like the liveness service does not take it over.
                .filter(|(name, _)| name != LIVENESS)
                // Models keep their status while the daemon starts: a model
                // loaded early can be probed on its own.
                .map(|(name, can_serve)| (name, can_serve && now != Phase::Draining))
                .collect();
            for name in published.keys().filter(|name| !current.contains_key(*name)) {
                health.clear_service_status(name).await;
            }
            for (name, ready) in &current {
                if published.get(name) != Some(ready) {
                    health.set_service_status(name, serving(*ready)).await;
                }
            }
            published = current;
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { return },
                changed = models.changed() => if changed.is_err() { return },
            }
        }
    }
}

fn serving(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
