//! `anyforge serve`: the HTTP server. OpenAI-compatible endpoints over a
//! model pack, sharing one generation engine (continuous batching).

mod body;
mod config;
mod drain;
mod error;
mod jobs;
mod jobs_api;
mod media;
mod metrics;
mod openai;
mod openapi;
mod speech;
#[cfg(test)]
mod tests;
mod uploads;
mod workflows_api;

use std::future::IntoFuture;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pipelines::pack::Pack;
use pipelines::tasks::Runner;
use tower::ServiceExt;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

pub use body::ApiJson;
pub use config::{ServeArgs, ServeLimits};
pub use error::{ApiError, ApiResult};

pub struct AppState {
    pub runner: Arc<Runner>,
    /// The durable job store, when the server has a data folder.
    pub jobs: Option<Arc<jobs::Jobs>>,
    pub api_key: Option<String>,
    pub limits: ServeLimits,
    /// The model id clients name (the pack's name).
    pub model: String,
    pub created: u64,
    pub metrics: metrics::Metrics,
    pub drain: drain::Drain,
}

pub type Shared = Arc<AppState>;

pub fn state(
    pack_dir: &std::path::Path,
    data_dir: Option<&std::path::Path>,
    api_key: Option<String>,
    limits: ServeLimits,
) -> Result<Shared> {
    let pack = Pack::load(pack_dir).with_context(|| format!("pack {}", pack_dir.display()))?;
    let model = pack.manifest.name.clone();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let runner = Arc::new(Runner::new(Arc::new(pack), limits.engine.clone()));
    let jobs = match data_dir {
        None => None,
        Some(dir) => {
            let store =
                jobs::Jobs::open(dir).with_context(|| format!("job store in {}", dir.display()))?;
            let worker_runner = runner.clone();
            store.start_worker(move |store, job, cancel| {
                jobs_api::run_job(&worker_runner, store, job, cancel)
            });
            Some(store)
        }
    };
    Ok(Arc::new(AppState {
        runner,
        jobs,
        api_key,
        limits,
        model,
        created,
        metrics: metrics::Metrics::default(),
        drain: drain::Drain::default(),
    }))
}

/// Request ids: 64 random bits, hex.
#[derive(Clone, Copy)]
struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("req_{:016x}", pipelines::generate::sampling::entropy_seed());
        id.parse().ok().map(RequestId::new)
    }
}

/// Every route, with the auth check and the body limit.
pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/images/generations", post(media::image_generations))
        .route("/v1/images/edits", post(uploads::image_edits))
        .route("/v1/audio/transcriptions", post(uploads::transcriptions))
        .route("/v1/audio/speech", post(speech::speech))
        .route("/v1/meshes", post(media::meshes))
        .route("/v1/videos", post(jobs_api::create).get(jobs_api::list))
        .route(
            "/v1/videos/{id}",
            get(jobs_api::retrieve).delete(jobs_api::delete),
        )
        .route("/v1/videos/{id}/content", get(jobs_api::content))
        .route("/v1/jobs/{id}", get(jobs_api::job))
        .route("/v1/jobs/{id}/cancel", post(jobs_api::cancel))
        .route("/v1/jobs/{id}/events", get(jobs_api::events))
        .route("/v1/workflows/runs", post(jobs_api::run_workflow))
        .route("/v1/files/{id}/content", get(jobs_api::file))
        .route("/v1/nodes", get(workflows_api::nodes))
        .route("/v1/workflows", get(workflows_api::list))
        .route("/v1/workflows/validate", post(workflows_api::validate))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(openapi::health))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::document))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // One span per request, carrying its id; the id goes back to the
        // client (`x-request-id`, the client's own when it sent one).
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Millis)),
        )
        .layer(SetRequestIdLayer::x_request_id(RequestIds))
        // A handler that panics answers 500; the connection and the server live on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::internal(
                    "the handler failed unexpectedly",
                ))
            },
        ))
        .with_state(state)
}

/// The API key check, and 503 for new work while draining.
async fn authorize(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError {
            retry_after: Some(state.limits.drain_seconds.max(1)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down; retry on another instance or after the restart",
            )
        });
    }
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid API key is needed (Authorization: Bearer KEY)",
            ));
        }
    }
    Ok(next.run(request).await)
}

/// `anyforge serve`: binds first and answers 503 while the pack loads, then
/// serves until SIGTERM or Ctrl-C, and drains (see [`drain`]).
pub fn serve(args: ServeArgs) -> Result<()> {
    init_logging(args.log_json);
    let settings = args.resolve()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let loaded: Arc<OnceLock<Loaded>> = Arc::new(OnceLock::new());
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("binding {}", settings.addr))?;
        let server = axum::serve(listener, starting_router(loaded.clone()))
            .with_graceful_shutdown(drain_on_signal(loaded.clone()))
            .into_future();
        tracing::info!(addr = %settings.addr, pack = %settings.pack.display(), "loading the pack");
        let (pack, data) = (settings.pack.clone(), settings.data_dir.clone());
        let (key, limits) = (settings.api_key.clone(), settings.limits.clone());
        let state =
            tokio::task::spawn_blocking(move || state(&pack, Some(&data), key, limits)).await??;
        tracing::info!(model = %state.model, "serving on http://{}", settings.addr);
        let app = router(state.clone());
        let _ = loaded.set(Loaded {
            state: state.clone(),
            app,
        });
        // The drain deadline bounds the wait for connections that stay open
        // (a stream): past it, what is left is cancelled and closed.
        tokio::select! {
            served = server => served?,
            () = async {
                state.drain.expired().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } => tracing::warn!("closing the connections left after the drain deadline"),
        }
        anyhow::Ok(())
    });
    if let Some(jobs) = loaded.get().and_then(|l| l.state.jobs.clone()) {
        // Lets the worker put a stopped job back in the queue before exit.
        jobs.stop(Duration::from_secs(10));
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Logs to stderr: text, or JSON lines; `ANYFORGE_LOG` filters
/// (`info` by default, e.g. `anyforge=debug,tower_http=warn`).
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANYFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Until the pack is loaded every request is answered 503 (with
/// `Retry-After`); then the full router serves.
/// The served app once the pack is loaded.
struct Loaded {
    state: Shared,
    app: Router,
}

fn starting_router(loaded: Arc<OnceLock<Loaded>>) -> Router {
    let service = tower::service_fn(move |request: Request| {
        let loaded = loaded.clone();
        async move {
            let response = match loaded.get() {
                Some(l) => l.app.clone().oneshot(request).await?,
                None => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is starting (loading the model pack)",
                    )
                }
                .into_response(),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    Router::new().fallback_service(service)
}

/// Ctrl-C or SIGTERM: new requests get 503, the job worker stops (its
/// running job goes back to the queue for the next start), requests in
/// flight get `drain_seconds` to finish, then are cancelled.
async fn drain_on_signal(loaded: Arc<OnceLock<Loaded>>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    let Some(state) = loaded.get().map(|l| l.state.clone()) else {
        return;
    };
    tracing::info!(
        seconds = state.limits.drain_seconds,
        "draining: finishing requests in flight"
    );
    state.drain.begin();
    if let Some(jobs) = state.jobs.clone() {
        jobs.stop(Duration::ZERO);
    }
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(state.limits.drain_seconds)).await;
        state.drain.expire();
    });
}

/// Seconds since the epoch, as OpenAI's `created` fields are.
pub fn openai_created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
