//! Runs one parse of hostile input under watch: in its own thread, with a
//! time bound, a caught panic, and the largest single allocation that
//! thread asked for.
//!
//! The test binary's global allocator is [`Watching`]: it forwards to the
//! system allocator and, on threads that asked for it, remembers the
//! largest request. A request the system cannot serve still aborts the
//! process (an allocator must not unwind), which is why every case is
//! written to disk before it runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The global allocator of the test binary (see the module docs).
pub struct Watching;

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Allocations above this are traced (where they came from).
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The trace of the first allocation above the limit.
    static TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let watched = WATCHED.try_with(Cell::get).unwrap_or(false);
    if !watched {
        return;
    }
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    if size > LIMIT.try_with(Cell::get).unwrap_or(usize::MAX) {
        // Unwatched while tracing: the trace allocates too.
        WATCHED.with(|w| w.set(false));
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let _ = TRACE.try_with(|t| t.borrow_mut().get_or_insert(trace).len());
        WATCHED.with(|w| w.set(true));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// How one case ended when it ended in time and without a panic.
pub struct Ended {
    /// `Ok` or the error's message (with its causes).
    pub result: Result<(), String>,
    /// How long it ran.
    pub elapsed: Duration,
    /// The largest single allocation the case's thread asked for.
    pub largest_allocation: usize,
    /// Where the first allocation above the limit was asked for.
    pub trace: Option<String>,
}

/// Why a case failed the guard.
pub enum Broke {
    /// It panicked, with this message.
    Panicked(String),
    /// It was still running after the bound.
    Hung(Duration),
}

/// Runs `parse` in a thread of its own and waits at most `bound` for it;
/// an allocation above `limit` bytes is traced.
pub fn watch<F>(bound: Duration, limit: usize, parse: F) -> Result<Ended, Broke>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        LIMIT.with(|l| l.set(limit));
        WATCHED.with(|w| w.set(true));
        LARGEST.with(|l| l.set(0));
        let start = Instant::now();
        let result = parse();
        let elapsed = start.elapsed();
        let largest_allocation = LARGEST.with(Cell::get);
        WATCHED.with(|w| w.set(false));
        let trace = TRACE.with(|t| t.borrow_mut().take());
        let _ = tx.send(Ended {
            result,
            elapsed,
            largest_allocation,
            trace,
        });
    });
    match rx.recv_timeout(bound) {
        Ok(ended) => {
            let _ = thread.join();
            Ok(ended)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let payload = thread.join().err();
            let message = payload
                .as_ref()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Broke::Panicked(message))
        }
        // The thread is left running: the test fails and the process ends.
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Broke::Hung(bound)),
    }
}
