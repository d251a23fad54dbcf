//! The telemetry endpoint of `opptak run` (`telemetry.listen`):
//!
//! - `GET /metrics`: every metric of the process ([`opptak_telemetry`]) in
//!   the Prometheus text format; `docs/metrics.md` lists them.
//! - `GET /healthz` (liveness): `200 ok` whenever the runtime answers — a
//!   process whose executor is wedged cannot answer, one waiting for a broker
//!   or database is still alive.
//! - `GET /readyz` (readiness): `200 ready` once every role of the process
//!   runs, the metadata store answers a trivial query and the bus a metadata
//!   request; otherwise `503` with the first reason in plain text.
//!
//! The endpoint starts before the edges are opened, so an orchestrator sees
//! a live process that is still starting (and why) rather than a closed
//! port. The review role keeps its own port (`web.listen`).

use crate::app::Edges;
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opptak_bus::Bus;
use opptak_store::MetadataStore;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a readiness probe waits for the metadata store and the bus each
/// (Kubernetes' default probe timeout is 1 s; set the probe's to 5 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks, filled in as `opptak run` starts.
#[derive(Default)]
pub struct Health {
    edges: OnceLock<Probe>,
    /// The roles this process runs, once all of them were started.
    roles: Mutex<Option<Vec<&'static str>>>,
}

struct Probe {
    meta: Arc<dyn MetadataStore>,
    bus: Arc<dyn Bus>,
    /// A topic every role uses (the telephony topic) for the bus's metadata request.
    topic: String,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The edges are open: readiness now asks them.
    pub fn edges_open(&self, edges: &Edges) {
        let _ = self.edges.set(Probe {
            meta: edges.meta.clone(),
            bus: edges.bus.clone(),
            topic: edges.config.recorder_config().topics.telephony,
        });
    }

    /// Every role of the process was started; each keeps
    /// `opptak_role_up{role}` at 1 while its task runs.
    pub fn roles_started(&self, roles: Vec<&'static str>) {
        *self.roles.lock().unwrap_or_else(|e| e.into_inner()) = Some(roles);
    }

    /// `Ok` when ready, else why not.
    pub async fn ready(&self) -> Result<(), String> {
        let Some(probe) = self.edges.get() else {
            return Err("starting: opening the metadata store, blob store and bus".into());
        };
        let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(roles) = roles else {
            return Err("starting: roles not started yet".into());
        };
        opptak_telemetry::metrics().roles_running(&roles)?;
        match tokio::time::timeout(PROBE_TIMEOUT, probe.meta.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("metadata store unavailable: {e}")),
            Err(_) => return Err(format!("metadata store did not answer within {PROBE_TIMEOUT:?}")),
        }
        match tokio::time::timeout(PROBE_TIMEOUT, probe.bus.ping(&probe.topic, PROBE_TIMEOUT)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("bus unavailable: {e}")),
            Err(_) => Err(format!("bus did not answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// The endpoint's routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, opptak_telemetry::CONTENT_TYPE)],
        opptak_telemetry::metrics().render(),
    )
        .into_response()
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => {
            tracing::debug!(%why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
        }
    }
}

/// The running endpoint.
pub struct Server {
    pub local_addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "telemetry endpoint stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "telemetry endpoint task failed"),
        }
    }
}

/// Binds `listen` and serves [`router`] until [`Server::stop`].
pub async fn serve(listen: &str, health: Arc<Health>) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("telemetry.listen {listen}"))?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(health)).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move { server.await });
    tracing::info!(listen = %local_addr, "telemetry endpoint: /metrics, /healthz, /readyz");
    Ok(Server { local_addr, stop, task })
}

/// `opptak run`'s endpoint: none when `telemetry.listen` is empty; a port
/// that cannot be bound is logged as an error and the roles run without it
/// (a recorder must keep recording even when its metrics cannot be served).
pub async fn start(listen: &str, health: Arc<Health>) -> Option<Server> {
    let listen = listen.trim();
    if listen.is_empty() {
        return None;
    }
    match serve(listen, health).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "telemetry endpoint not started: no /metrics, /healthz or /readyz");
            None
        }
    }
}
