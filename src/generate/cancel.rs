//! A flag the caller of a generation sets to stop it: a client that went
//! away, a request past its time, a Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared between the generation and whoever may stop it; cloning shares
/// the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the generation to stop at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Clears the flag, for the next generation it stops.
    pub fn reset(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether [`CancelFlag::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
