//! The volunteer's view: a live status page, `/metrics` and a small API,
//! served from the binary itself (no external assets).
//!
//! Owners, joined by bounded channels or shared atomics, so nothing here
//! can hold up the swarm task:
//! - the **observer** task takes the host's event stream, keeps the page's
//!   state ([`view::View`]) and the metrics, publishes a JSON snapshot on a
//!   `watch` channel (so slow readers see the latest, never a backlog) and
//!   passes every event on to the caller's printer;
//! - the **server** (axum) answers requests from the snapshot, the metrics
//!   and the [`Control`]; `/api/events` streams snapshots as server-sent
//!   events.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page |
//! | `GET /metrics` | Prometheus/OpenMetrics text |
//! | `GET /api/status` | the snapshot (`peer_id`, `state`, `tasks_done`, ...) |
//! | `GET /api/events` | the snapshot on every change (SSE) |
//! | `POST /api/pause`, `/api/resume` | with `Authorization: Bearer TOKEN` |
//! | `GET /api/policy` | the policy in force, as JSON |
//! | `POST /api/policy` | a `[policy]` table as JSON, with the token |
//! | `GET /api/ledger` | the host's ledger (`biop2p ledger --json`'s view), with the token |
//!
//! The bound address is written to `DATA_DIR/http.addr` (beside the token),
//! so `biop2p pause`, `resume` and `policy` on the same machine find the
//! page even when it was bound to port 0.

mod metrics;
pub mod token;
mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::node::{Control, HostEvent};

pub use metrics::Metrics;
pub use view::{HostFacts, Snapshot, SubmitterView, TaskView};

/// The page: HTML, CSS and script in one file, compiled in.
const PAGE: &str = include_str!("page.html");
/// Live pages (SSE streams) at once; more get 503.
const MAX_STREAMS: usize = 32;
/// Largest request body (a policy is a few hundred bytes).
const MAX_BODY: usize = 4096;
/// How often the snapshot is refreshed without an event (uptime, the
/// policy's clock, peers.json).
const REFRESH: Duration = Duration::from_millis(500);

/// The file in the data dir that holds the address the page is bound to.
pub const ADDR_FILE: &str = "http.addr";

/// Errors of starting the HTTP side.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("cannot listen on http {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file (or the address file beside it) could not be read
    /// or written.
    #[error("cannot read or write {path}")]
    Token {
        /// `DATA_DIR/http.token`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The status could not be encoded as JSON.
    #[error("cannot encode the status")]
    Encode(#[source] serde_json::Error),
}

/// What the HTTP side needs of a host.
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host's data dir (token, `peers.json`).
    pub data_dir: PathBuf,
    /// The host's control.
    pub control: Control,
    /// Facts the page shows.
    pub facts: HostFacts,
}

/// A running HTTP side.
pub struct HttpHandle {
    /// Where it listens (the port is chosen when 0 was asked).
    pub addr: SocketAddr,
    /// The control token.
    pub token: String,
    /// The host's events, passed on unchanged (bounded like the host's).
    pub events: mpsc::Receiver<HostEvent>,
    server: tokio::task::JoinHandle<()>,
    observer: tokio::task::JoinHandle<()>,
}

impl HttpHandle {
    /// Stops serving.
    pub async fn shutdown(self) {
        self.server.abort();
        self.observer.abort();
        let _ = self.server.await;
        let _ = self.observer.await;
    }
}

#[derive(Clone)]
struct AppState {
    snapshot: watch::Receiver<Arc<String>>,
    metrics: Arc<Metrics>,
    control: Control,
    token: Arc<String>,
    streams: Arc<Semaphore>,
    refresh: Arc<Notify>,
    workers: usize,
}

/// Binds the listener, loads the token and starts the observer and the
/// server; `events` is the host's stream, handed back in the handle.
pub async fn start(
    opts: HttpOptions,
    events: mpsc::Receiver<HostEvent>,
) -> Result<HttpHandle, HttpError> {
    let token = token::load_or_create(&opts.data_dir).map_err(|source| HttpError::Token {
        path: opts.data_dir.join(token::TOKEN_FILE),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: opts.listen,
        source,
    })?;
    let addr_file = opts.data_dir.join(ADDR_FILE);
    crate::fsutil::write_atomic(&addr_file, format!("{addr}\n").as_bytes()).map_err(|source| {
        HttpError::Token {
            path: addr_file.clone(),
            source,
        }
    })?;
    let metrics = Arc::new(Metrics::new(opts.control.adverts_seen()));
    let workers = opts.facts.workers;
    let view = view::View::new(opts.facts, crate::node::host::unix_now_ms());
    // The first snapshot is made here, before the address is handed out, so
    // a page that asks at once sees the host's state and not an empty `{}`
    // (the observer task may not have run yet).
    let first = serde_json::to_string(&view.snapshot(
        &opts.control,
        &metrics,
        crate::node::host::unix_now_ms(),
    ))
    .map_err(HttpError::Encode)?;
    let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
    let (out_tx, out_rx) = mpsc::channel(4096);
    let refresh = Arc::new(Notify::new());
    let observer = tokio::spawn(observe(
        view,
        events,
        out_tx,
        snap_tx,
        metrics.clone(),
        opts.control.clone(),
        opts.data_dir.clone(),
        refresh.clone(),
    ));
    let state = AppState {
        snapshot: snap_rx,
        metrics,
        control: opts.control,
        token: Arc::new(token.clone()),
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        refresh,
        workers,
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status))
        .route("/api/events", get(events_sse))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/policy", get(policy).post(set_policy))
        .route("/api/ledger", get(ledger))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    tracing::info!(%addr, "status page listening");
    Ok(HttpHandle {
        addr,
        token,
        events: out_rx,
        server,
        observer,
    })
}

/// The observer task (see the module docs).
#[allow(clippy::too_many_arguments)]
async fn observe(
    mut view: view::View,
    mut events: mpsc::Receiver<HostEvent>,
    out: mpsc::Sender<HostEvent>,
    snap: watch::Sender<Arc<String>>,
    metrics: Arc<Metrics>,
    control: Control,
    data_dir: PathBuf,
    refresh: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publish = |view: &view::View| match serde_json::to_string(&view.snapshot(
        &control,
        &metrics,
        crate::node::host::unix_now_ms(),
    )) {
        Ok(s) => {
            snap.send_replace(Arc::new(s));
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the status"),
    };
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                view.on_event(&ev, &metrics, crate::node::host::unix_now_ms());
                // Drain what else is ready, then publish once.
                let mut evs = vec![ev];
                while let Ok(more) = events.try_recv() {
                    view.on_event(&more, &metrics, crate::node::host::unix_now_ms());
                    evs.push(more);
                }
                publish(&view);
                for ev in evs {
                    // Like the host's own stream: dropped if nobody reads.
                    let _ = out.try_send(ev);
                }
            }
            _ = tick.tick() => {
                view.set_swarm(read_swarm(&data_dir).await, &metrics);
                publish(&view);
            }
            _ = refresh.notified() => publish(&view),
        }
    }
    publish(&view);
}

async fn read_swarm(data_dir: &Path) -> Vec<crate::node::PeerEntry> {
    let path = data_dir.join(crate::node::host::PEERS_FILE);
    match tokio::fs::read(&path).await {
        Ok(b) => serde_json::from_slice::<crate::node::peers::PeersFile>(&b)
            .map(|f| f.hosts)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Only this page's own inline code; nothing fetched elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
            ),
        ],
        Html(PAGE),
    )
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    // Gauges read at scrape time, not only when an event came.
    s.metrics.peers.set(s.control.connected_peers() as i64);
    s.metrics.running.set(s.control.running() as i64);
    s.metrics.paused.set(i64::from(s.control.paused()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(s.control.network_metrics()),
    )
}

async fn status(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.snapshot.borrow().as_str().to_owned();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn events_sse(State(s): State<AppState>) -> Response {
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live pages\n").into_response();
    };
    let rx = s.snapshot.clone();
    let stream =
        futures::stream::unfold((rx, true, permit), |(mut rx, first, permit)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let data = rx.borrow_and_update().clone();
            let ev = Event::default().data(data.as_str());
            Some((Ok::<_, Infallible>(ev), (rx, false, permit)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The 401 for a request without the right bearer token; `None` when the
/// token is right.
fn unauthorised(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match got {
        Some(t) if token::matches(&s.token, t.trim()) => None,
        Some(_) => Some((StatusCode::UNAUTHORIZED, "wrong token\n").into_response()),
        None => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing Authorization: Bearer TOKEN (the token is in DATA_DIR/http.token)\n",
            )
                .into_response(),
        ),
    }
}

async fn pause(State(s): State<AppState>, headers: HeaderMap) -> Response {
    set_paused(s, headers, true)
}

async fn resume(State(s): State<AppState>, headers: HeaderMap) -> Response {
    set_paused(s, headers, false)
}

fn set_paused(s: AppState, headers: HeaderMap, paused: bool) -> Response {
    if let Some(r) = unauthorised(&s, &headers) {
        return r;
    }
    s.control.set_paused(paused);
    s.refresh.notify_one();
    // The state from the control itself: the snapshot is republished by
    // the observer a moment later.
    let state = view::state_of(
        s.control.paused(),
        s.control.stopped().is_some(),
        s.control.running(),
        s.workers,
    );
    Json(serde_json::json!({ "paused": paused, "state": state })).into_response()
}

/// The host's whole ledger (`biop2p ledger` while the host runs). It names
/// every submitter and job, so it takes the control token.
async fn ledger(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorised(&s, &headers) {
        return r;
    }
    let control = s.control.clone();
    match tokio::task::spawn_blocking(move || control.ledger_view()).await {
        Ok(Some(Ok(v))) => Json(v).into_response(),
        Ok(Some(Err(e))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("ledger: {e}\n")).into_response()
        }
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "the host is stopping\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ledger read failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn policy(State(s): State<AppState>) -> Response {
    Json(s.control.config()).into_response()
}

async fn set_policy(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = unauthorised(&s, &headers) {
        return r;
    }
    let config: roles::PolicyConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("invalid policy: {e}\n")).into_response();
        }
    };
    if let Err(e) = s.control.set_config(config) {
        return (StatusCode::BAD_REQUEST, format!("invalid policy: {e}\n")).into_response();
    }
    s.refresh.notify_one();
    Json(s.control.config()).into_response()
}
