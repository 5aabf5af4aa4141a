//! What every request shares: the loaded engine and databases (once
//! loading is done), the worker pool, the metrics, the key; and the
//! per-request ticket that cancels a generation whose client went away or
//! whose time ran out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::api_error::ApiError;
use super::metrics::{Gauges, Metrics};
use super::workers::WorkerPool;
use super::ServeOptions;
use crate::agent::{DatabaseHandle, Engine};
use crate::generate::CancelFlag;

/// The engine and databases, once loaded.
pub struct Ready {
    /// The shared engine.
    pub engine: Arc<Engine>,
    /// The served databases by name, each with its grammar.
    pub databases: BTreeMap<String, Arc<DatabaseHandle>>,
}

/// Shared by every request.
pub struct AppState {
    /// The server's options.
    pub options: ServeOptions,
    /// Set when loading is done.
    pub ready: OnceLock<Ready>,
    /// Generation workers.
    pub pool: WorkerPool,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Set once shutdown has begun: new work is refused.
    pub stopping: AtomicBool,
    /// The cancel flags of requests in flight, by ticket id.
    active: Mutex<HashMap<u64, CancelFlag>>,
    next_ticket: AtomicU64,
    /// SHA-256 of the key (compared in constant time; the key itself is
    /// not kept).
    key_digest: Option<[u8; 32]>,
    /// When the server started.
    pub started: Instant,
}

impl AppState {
    /// A state for `options`, nothing loaded yet.
    pub fn new(options: ServeOptions) -> Self {
        let key_digest = options.api_key.as_deref().map(digest);
        let pool = WorkerPool::new(options.workers, options.queue);
        Self {
            options,
            ready: OnceLock::new(),
            pool,
            metrics: Metrics::default(),
            stopping: AtomicBool::new(false),
            active: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
            key_digest,
            started: Instant::now(),
        }
    }

    /// The engine and databases, or 503 while loading or stopping.
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        self.ready
            .get()
            .ok_or_else(|| ApiError::unavailable("the model is still loading; try again shortly"))
    }

    /// Whether `headers` carry the key (always, when the server has none).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.key_digest else {
            return true;
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or("");
        // Digests have one length: the comparison leaks nothing of the key.
        bool::from(digest(given).ct_eq(expected))
    }

    /// The gauges for `/metrics`.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            queue_depth: self.pool.queued(),
            queue_capacity: self.pool.capacity(),
            busy_workers: self.pool.busy(),
            workers: self.pool.workers(),
            ready: self.ready.get().is_some(),
        }
    }

    /// Cancels every request in flight (the end of a graceful shutdown).
    pub fn cancel_all(&self) {
        for flag in self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            flag.cancel();
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// One request's hold on a generation: dropped before the work is done
/// (the client went away), it cancels the generation; its timer cancels
/// it when the request's time runs out.
pub struct Ticket {
    state: Arc<AppState>,
    id: u64,
    /// The flag the generation polls.
    pub flag: CancelFlag,
    timed_out: Arc<AtomicBool>,
    timer: tokio::task::JoinHandle<()>,
    finished: bool,
}

impl Ticket {
    /// A ticket for a new request, its timer started.
    pub fn new(state: &Arc<AppState>) -> Self {
        let id = state.next_ticket.fetch_add(1, Ordering::Relaxed);
        let flag = CancelFlag::new();
        state
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, flag.clone());
        let timed_out = Arc::new(AtomicBool::new(false));
        let timer = {
            let flag = flag.clone();
            let timed_out = Arc::clone(&timed_out);
            let limit = state.options.limits.request_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                timed_out.store(true, Ordering::SeqCst);
                flag.cancel();
            })
        };
        Self {
            state: Arc::clone(state),
            id,
            flag,
            timed_out,
            timer,
            finished: false,
        }
    }

    /// Runs `work` on a worker, or answers 429 at once when the queue is
    /// full. The receiver yields the result; it closes without one when
    /// the request was cancelled before a worker took it.
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&CancelFlag) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, ApiError> {
        let (tx, rx) = oneshot::channel();
        let flag = self.flag.clone();
        let state = Arc::clone(&self.state);
        self.state
            .pool
            .try_submit(Box::new(move || {
                if flag.is_cancelled() {
                    state.metrics.cancelled();
                    return;
                }
                let result = work(&flag);
                if flag.is_cancelled() {
                    state.metrics.cancelled();
                }
                let _ = tx.send(result);
            }))
            .map_err(|_| ApiError::busy())?;
        Ok(rx)
    }

    /// The error for a generation that stopped on its flag: past its time
    /// (504) or cut short by shutdown (503).
    pub fn stopped_error(&self) -> ApiError {
        if self.timed_out.load(Ordering::SeqCst) {
            ApiError::timeout(self.state.options.limits.request_timeout.as_secs_f64())
        } else {
            ApiError::unavailable("the request was cancelled: the server is shutting down")
        }
    }

    /// The work is done and delivered: dropping the ticket no longer
    /// cancels anything.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.cancel();
        }
        self.timer.abort();
        self.state
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AskOptions;
    use crate::chat::PromptSpec;
    use crate::server::RequestLimits;

    fn state(api_key: Option<&str>) -> AppState {
        AppState::new(ServeOptions {
            host: "127.0.0.1".into(),
            port: 0,
            databases: Vec::new(),
            grammar: Default::default(),
            ask: AskOptions::new(PromptSpec::load("default").unwrap()),
            adapter_prompts: Default::default(),
            model_name: "m".into(),
            workers: 1,
            queue: 1,
            api_key: api_key.map(str::to_string),
            limits: RequestLimits::default(),
            shutdown_grace: std::time::Duration::from_secs(1),
        })
    }

    #[test]
    fn before_loading_and_while_stopping_requests_get_503() {
        let s = state(None);
        let e = s.ready().err().expect("not ready");
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("loading"), "{}", e.message);
        assert!(e.retry_after.is_some());
        s.stopping.store(true, Ordering::SeqCst);
        let e = s.ready().err().expect("stopping");
        assert!(e.message.contains("shutting down"), "{}", e.message);
        s.pool.shutdown();
    }

    #[test]
    fn only_the_exact_bearer_key_is_authorized() {
        let s = state(Some("k3y"));
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(s.authorized(&headers("Bearer k3y")));
        assert!(!s.authorized(&headers("Bearer k3")));
        assert!(!s.authorized(&headers("Bearer k3yy")));
        assert!(!s.authorized(&headers("k3y")));
        assert!(!s.authorized(&HeaderMap::new()));
        assert!(state(None).authorized(&HeaderMap::new()));
        s.pool.shutdown();
    }
}
