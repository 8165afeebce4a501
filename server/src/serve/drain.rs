//! Running tasks for requests: off the async threads, cancelled when the
//! client hangs up (the handler's future is dropped) or when a draining
//! server's deadline passes.

use std::sync::atomic::{AtomicBool, Ordering};

use pipelines::generate::CancelToken;
use pipelines::tasks::{TaskInputs, TaskName, TaskOptions, TaskOutput};
use pipelines::PipelineError;
use tokio::sync::watch;

use super::{ApiError, ApiResult, Shared};

/// A server's shutdown state: draining (no new work) and, once the drain
/// deadline passes, expired (work still running is cancelled).
pub struct Drain {
    draining: AtomicBool,
    expired: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: AtomicBool::new(false),
            expired: watch::channel(false).0,
        }
    }
}

impl Drain {
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn expire(&self) {
        self.expired.send_replace(true);
    }

    /// Resolves once the deadline has passed.
    pub async fn expired(&self) {
        let mut rx = self.expired.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }
}

/// Runs `task`; its outputs in order.
pub async fn run_task(
    state: &Shared,
    task: TaskName,
    options: TaskOptions,
    inputs: TaskInputs,
) -> ApiResult<Vec<TaskOutput>> {
    let cancel = CancelToken::new();
    // Dropped with this future when the client disconnects: the engine
    // lets the task's sequences go at its next step.
    let guard = cancel.cancel_on_drop();
    let worker = state.clone();
    let work = tokio::task::spawn_blocking(move || {
        worker.runner.run_until(task, &options, &inputs, &cancel)
    });
    let result = tokio::select! {
        joined = work => joined.map_err(ApiError::internal)??,
        () = state.drain.expired() => return Err(PipelineError::Cancelled.into()),
    };
    guard.disarm();
    Ok(result.outputs)
}
