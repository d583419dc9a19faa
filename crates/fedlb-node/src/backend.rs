//! A tiny HTTP backend for demos and tests (`fedlb backend`): it answers `GET /` after a
//! configurable latency, and can be told to fail, recover or slow down while it runs.
//!
//! - `GET /`, `GET /health`: `200 <name>` (or `503` while failing), after the latency.
//! - `GET /stub_status`: nginx-style counters (active connections, requests in flight), so
//!   the load probe can read it as it reads nginx.
//! - `GET /metrics`: `fedlb_backend_in_flight` and `fedlb_backend_requests_total`, and each
//!   application metric set by `/admin/metric` as `NAME{source="admin"} VALUE` (next to a
//!   decoy series `NAME{source="decoy"} 1e9`, so a probe that drops labels is caught).
//! - `POST /admin/fail`, `POST /admin/recover`, `POST /admin/latency?ms=N`,
//!   `POST /admin/metric?name=NAME&value=V` (an application metric, e.g. `dbms_users`):
//!   change behaviour.
//! - On Unix, `SIGUSR1` makes it fail and `SIGUSR2` makes it recover (wired by the binary).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

/// Shared, live-adjustable behaviour of a backend.
#[derive(Debug)]
pub struct Behaviour {
    name: String,
    failing: AtomicBool,
    latency_ms: AtomicU64,
    in_flight: AtomicU64,
    requests: AtomicU64,
    metrics: Mutex<BTreeMap<String, f64>>,
}

impl Behaviour {
    /// A healthy backend named `name` answering after `latency`.
    pub fn new(name: impl Into<String>, latency: Duration) -> Arc<Self> {
        Arc::new(Behaviour {
            name: name.into(),
            failing: AtomicBool::new(false),
            latency_ms: AtomicU64::new(latency.as_millis() as u64),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            metrics: Mutex::new(BTreeMap::new()),
        })
    }

    /// Makes the backend answer 503 (true) or 200 (false).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Changes the latency.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets application metric `name` (shown on `/metrics`).
    pub fn set_metric(&self, name: &str, value: f64) {
        self.metrics
            .lock()
            .expect("metrics lock")
            .insert(name.to_owned(), value);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(State(b): State<Arc<Behaviour>>) -> impl IntoResponse {
    b.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(&b.in_flight);
    b.requests.fetch_add(1, Ordering::SeqCst);
    let ms = b.latency_ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if b.failing.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} failing\n", b.name),
        )
    } else {
        (StatusCode::OK, format!("{}\n", b.name))
    }
}

async fn stub_status(State(b): State<Arc<Behaviour>>) -> String {
    let active = b.in_flight.load(Ordering::SeqCst);
    let total = b.requests.load(Ordering::SeqCst);
    format!(
        "Active connections: {active} \nserver accepts handled requests\n {total} {total} {total} \nReading: 0 Writing: {active} Waiting: 0 \n"
    )
}

async fn metrics(State(b): State<Arc<Behaviour>>) -> String {
    let mut out = format!(
        "# TYPE fedlb_backend_in_flight gauge\nfedlb_backend_in_flight {}\n# TYPE fedlb_backend_requests_total counter\nfedlb_backend_requests_total {}\n",
        b.in_flight.load(Ordering::SeqCst),
        b.requests.load(Ordering::SeqCst)
    );
    for (name, value) in b.metrics.lock().expect("metrics lock").iter() {
        out.push_str(&format!(
            "# TYPE {name} gauge\n{name}{{source=\"admin\"}} {value}\n{name}{{source=\"decoy\"}} 1e9\n"
        ));
    }
    out
}

#[derive(Deserialize)]
struct MetricQuery {
    name: String,
    value: f64,
}

#[derive(Deserialize)]
struct LatencyQuery {
    ms: u64,
}

/// The backend's routes.
pub fn router(b: Arc<Behaviour>) -> Router {
    Router::new()
        .route("/", get(answer))
        .route("/health", get(answer))
        .route("/stub_status", get(stub_status))
        .route("/metrics", get(metrics))
        .route(
            "/admin/fail",
            post(|State(b): State<Arc<Behaviour>>| async move {
                b.set_failing(true);
                "failing\n"
            }),
        )
        .route(
            "/admin/recover",
            post(|State(b): State<Arc<Behaviour>>| async move {
                b.set_failing(false);
                "recovered\n"
            }),
        )
        .route(
            "/admin/latency",
            post(
                |State(b): State<Arc<Behaviour>>, Query(q): Query<LatencyQuery>| async move {
                    b.set_latency(Duration::from_millis(q.ms));
                    format!("latency {} ms\n", q.ms)
                },
            ),
        )
        .route(
            "/admin/metric",
            post(
                |State(b): State<Arc<Behaviour>>, Query(q): Query<MetricQuery>| async move {
                    let valid = !q.name.is_empty()
                        && q.name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && q.value.is_finite();
                    if !valid {
                        return (
                            StatusCode::BAD_REQUEST,
                            format!(
                                "metric {:?} = {}: not a metric name and a number\n",
                                q.name, q.value
                            ),
                        );
                    }
                    b.set_metric(&q.name, q.value);
                    (StatusCode::OK, format!("{} {}\n", q.name, q.value))
                },
            ),
        )
        .with_state(b)
}

/// Serves a backend on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    b: Arc<Behaviour>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(b))
        .with_graceful_shutdown(shutdown)
        .await
}
