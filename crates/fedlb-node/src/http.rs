//! The status endpoint: `GET /status` (JSON), `GET /` (HTML page), `GET /metrics`
//! (Prometheus text), `GET /healthz`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::status::{Status, render_html};

/// Where the endpoint gets a fresh status document (`None` while the node shuts down).
pub type StatusFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Status>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    status: StatusFn,
    metrics: Arc<Metrics>,
}

/// The router; bind it where you like (tests bind port 0).
pub fn router(status: StatusFn, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(json))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(AppState { status, metrics })
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: StatusFn,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(status, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn json(State(s): State<AppState>) -> Response {
    match (s.status)().await {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn page(State(s): State<AppState>) -> Response {
    match (s.status)().await {
        Some(status) => Html(render_html(&status, 2)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn prometheus(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
