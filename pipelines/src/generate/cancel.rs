//! Cancelling work from outside: a client that hangs up, a job cancelled
//! while it runs, a server draining on SIGTERM. The engine checks linked
//! tokens between decode steps, so a cancelled request frees its slot at
//! the next step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared cancel flag; clones see the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels the token when dropped: held by a request
    /// handler, it cancels the work when the handler's future is dropped
    /// (the client disconnected) unless [`CancelOnDrop::disarm`] ran first.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

pub struct CancelOnDrop(Option<CancelToken>);

impl CancelOnDrop {
    /// The work finished; dropping the guard no longer cancels.
    pub fn disarm(mut self) {
        self.0.take();
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_cancel_when_dropped_unless_disarmed() {
        let token = CancelToken::new();
        token.cancel_on_drop().disarm();
        assert!(!token.is_cancelled());
        drop(token.cancel_on_drop());
        assert!(token.is_cancelled());
        assert!(token.clone().is_cancelled());
    }
}
