//! `anyforge serve`: the HTTP server. OpenAI-compatible endpoints over a
//! model pack, sharing one generation engine (continuous batching).

mod error;
mod jobs;
mod jobs_api;
mod media;
mod metrics;
mod openai;
#[cfg(test)]
mod tests;
mod uploads;
mod workflows_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use pipelines::generate::EngineConfig;
use pipelines::pack::{self, Pack};
use pipelines::tasks::Runner;
use serde::Deserialize;

pub use error::{ApiError, ApiResult};

/// Request limits. Configuration, with defaults for a small server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeLimits {
    pub max_body_bytes: usize,
    pub max_n: usize,
    pub max_tokens: usize,
    /// Batch size, step budget, queue bound and context of the engine.
    pub engine: EngineConfig,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_body_bytes: 32 << 20,
            max_n: 8,
            max_tokens: 4096,
            engine: EngineConfig::default(),
        }
    }
}

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
}

pub type Shared = Arc<AppState>;

#[derive(Args)]
pub struct ServeArgs {
    /// A model pack folder (default: $ANYFORGE_PACK, else the default pack).
    #[arg(long, env = "ANYFORGE_PACK")]
    pack: Option<PathBuf>,
    #[arg(long, env = "ANYFORGE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Clients must send `Authorization: Bearer KEY`.
    #[arg(long, env = "ANYFORGE_API_KEY")]
    api_key: Option<String>,
    /// Allow a non-loopback address without an API key.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Limits as a JSON file (fields of `ServeLimits`).
    #[arg(long, env = "ANYFORGE_LIMITS")]
    limits: Option<PathBuf>,
    /// Where jobs and their files are kept across restarts.
    #[arg(long, env = "ANYFORGE_DATA_DIR", default_value = "anyforge-data")]
    data_dir: PathBuf,
}

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
            store.start_worker(move |store, job| jobs_api::run_job(&worker_runner, store, job));
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
    }))
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
        .route("/v1/audio/speech", post(media::speech))
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
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics::render))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
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

async fn authorize(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
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

pub fn serve(args: ServeArgs) -> Result<()> {
    if !args.addr.ip().is_loopback() && args.api_key.is_none() && !args.allow_unauthenticated {
        bail!(
            "--addr {}: serving beyond this machine needs --api-key (or --allow-unauthenticated)",
            args.addr
        );
    }
    let limits = match &args.limits {
        None => ServeLimits::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid limits", p.display()))?
        }
    };
    let dir = args.pack.clone().unwrap_or_else(pack::default_dir);
    let state = state(&dir, Some(&args.data_dir), args.api_key.clone(), limits)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        eprintln!("anyforge: serving {} on http://{}", state.model, args.addr);
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok(())
    })
}

/// Ctrl-C or SIGTERM: stop accepting, let requests in flight finish.
async fn shutdown() {
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
}

/// Seconds since the epoch, as OpenAI's `created` fields are.
pub fn openai_created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
