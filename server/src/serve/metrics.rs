//! `/metrics` in the Prometheus text format: requests and latency by route
//! and status, the engine's queue depth, running sequences and generated
//! tokens, and jobs by state.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// route -> (seconds, count).
    latency: Mutex<BTreeMap<String, (f64, u64)>>,
}

/// Counts every request by its route pattern (not its raw path, so ids do
/// not blow up the label set).
pub async fn track(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(mut r) = state.metrics.requests.lock() {
        *r.entry((route.clone(), response.status().as_u16()))
            .or_default() += 1;
    }
    if let Ok(mut l) = state.metrics.latency.lock() {
        let e = l.entry(route).or_default();
        e.0 += seconds;
        e.1 += 1;
    }
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text: requests, latency, queue depth, tokens/s, job states", content_type = "text/plain")))]
pub async fn render(State(state): State<Shared>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP anyforge_http_requests_total HTTP requests by route and status."
    );
    let _ = writeln!(out, "# TYPE anyforge_http_requests_total counter");
    if let Ok(r) = state.metrics.requests.lock() {
        for ((route, status), n) in r.iter() {
            let _ = writeln!(
                out,
                "anyforge_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP anyforge_http_request_seconds Time to answer, by route."
    );
    let _ = writeln!(out, "# TYPE anyforge_http_request_seconds summary");
    if let Ok(l) = state.metrics.latency.lock() {
        for (route, (sum, count)) in l.iter() {
            let _ = writeln!(
                out,
                "anyforge_http_request_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "anyforge_http_request_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP anyforge_queue_depth Generation requests waiting for the engine."
    );
    let _ = writeln!(out, "# TYPE anyforge_queue_depth gauge");
    let _ = writeln!(out, "anyforge_queue_depth {}", state.runner.queue_depth());
    let _ = writeln!(
        out,
        "# HELP anyforge_running_sequences Sequences the engine is generating."
    );
    let _ = writeln!(out, "# TYPE anyforge_running_sequences gauge");
    let _ = writeln!(out, "anyforge_running_sequences {}", state.runner.running());
    let _ = writeln!(
        out,
        "# HELP anyforge_generated_tokens_total Tokens generated (rate() gives tokens/s)."
    );
    let _ = writeln!(out, "# TYPE anyforge_generated_tokens_total counter");
    let _ = writeln!(
        out,
        "anyforge_generated_tokens_total {}",
        state.runner.generated_tokens()
    );
    if let Some(jobs) = &state.jobs {
        let _ = writeln!(out, "# HELP anyforge_jobs Jobs by state.");
        let _ = writeln!(out, "# TYPE anyforge_jobs gauge");
        for (status, n) in jobs.counts().unwrap_or_default() {
            let _ = writeln!(out, "anyforge_jobs{{status=\"{status}\"}} {n}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
