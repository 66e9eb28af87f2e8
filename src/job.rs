//! Long work (loading, importance, quantization, evaluation) reports progress and can be cancelled.
//! The CLI turns progress into bars; the GUI into a channel message and a repaint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Shared flag that asks a running job to stop at its next check.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One progress report: which stage, how far, and (for evaluation) a running estimate such as PPL.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub stage: String,
    pub done: u64,
    pub total: u64,
    pub estimate: Option<f64>,
}

type Sink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Handed to every long call: where to report progress and whether to stop.
#[derive(Clone, Default)]
pub struct Job {
    cancel: CancelToken,
    sink: Option<Sink>,
}

impl Job {
    /// A job nobody watches and nobody cancels (tests, quick calls).
    pub fn silent() -> Self {
        Self::default()
    }

    pub fn new(cancel: CancelToken, sink: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        Self { cancel, sink: Some(Arc::new(sink)) }
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    pub fn report(&self, stage: &str, done: u64, total: u64, estimate: Option<f64>) {
        if let Some(sink) = &self.sink {
            sink(&Progress { stage: stage.to_string(), done, total, estimate });
        }
    }

    /// Call between units of work: returns `Err(Cancelled)` once cancellation was requested.
    pub fn checkpoint(&self) -> Result<()> {
        if self.cancel.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}
