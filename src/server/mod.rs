//! `sqlagent serve`: one shared engine behind an OpenAI-compatible HTTP
//! server — `/v1/chat/completions` (with server-sent events),
//! `/v1/completions`, `/v1/sql`, `/v1/models`, `/v1/databases`,
//! `/health`, `/metrics`, and the page at `/`. The only module that knows axum and tokio:
//! generation runs on a fixed pool of worker threads behind a bounded
//! queue (a full queue answers 429), each request with a ticket that
//! cancels its generation when the client goes away or its time runs out.

mod api_error;
mod metrics;
mod openai;
mod page;
mod routes;
mod state;
mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::agent::{AskOptions, DatabaseHandle, Engine};
use crate::error::{Error, Result};
use crate::grammar::GrammarOptions;
pub use api_error::ApiError;
use state::{AppState, Ready};

/// Limits on what one request may ask.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest question, in characters (413 beyond).
    pub max_question_chars: usize,
    /// Most tokens a request may ask to generate (400 beyond).
    pub max_tokens: usize,
    /// Wall time from arrival to the last byte, queue included (504 beyond).
    pub request_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_question_chars: 4000,
            max_tokens: 1024,
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (`127.0.0.1` unless asked otherwise).
    pub host: String,
    /// Port (0: any free one).
    pub port: u16,
    /// The served databases: (name, file).
    pub databases: Vec<(String, PathBuf)>,
    /// The SQL grammar's options for every database.
    pub grammar: GrammarOptions,
    /// Defaults of every request: prompt, sampling, execution limits,
    /// retries (a request overrides sampling and the row cap).
    pub ask: AskOptions,
    /// The prompt each adapter answers with instead of `ask.prompt` (the
    /// prompts adapters carry; empty when one prompt was chosen for all).
    pub adapter_prompts: std::collections::BTreeMap<String, crate::chat::PromptSpec>,
    /// The name clients give the base model (`/v1/models`).
    pub model_name: String,
    /// Generation workers.
    pub workers: usize,
    /// Requests that may wait for a worker before the server answers 429.
    pub queue: usize,
    /// The key every `/v1/*` and `/metrics` request must bear, if any.
    pub api_key: Option<String>,
    /// Per-request limits.
    pub limits: RequestLimits,
    /// How long a shutdown waits for requests in flight before it cancels
    /// them.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// A request's options before its own overrides: the defaults, answered
    /// by `adapter` with that adapter's prompt.
    pub fn ask_with(&self, adapter: Option<String>) -> AskOptions {
        let mut options = self.ask.clone();
        if let Some(prompt) = adapter.as_ref().and_then(|a| self.adapter_prompts.get(a)) {
            options.prompt = prompt.clone();
        }
        options.adapter = adapter;
        options
    }
}

/// What the server tells its caller as it goes.
#[derive(Debug, Clone)]
pub enum ServeEvent {
    /// Bound and answering (503 until the model is loaded).
    Listening(SocketAddr),
    /// The model and databases are loaded.
    Ready {
        /// Seconds loading took.
        seconds: f64,
    },
    /// A signal arrived: finishing (then cancelling) requests in flight.
    ShuttingDown,
}

/// Serves until SIGINT or SIGTERM. The databases are checked first; then
/// the port is bound (reported as [`ServeEvent::Listening`]) and `load`
/// runs on its own thread while the server answers 503; a load that fails
/// stops the server with its error.
pub fn serve(
    options: ServeOptions,
    load: impl FnOnce() -> Result<Engine> + Send + 'static,
    on_event: impl Fn(ServeEvent) + Send + Sync + 'static,
) -> Result<()> {
    check_databases(&options.databases)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sqlagent-http")
        .enable_all()
        .build()
        .map_err(|e| serve_error(&options, format!("starting the runtime: {e}")))?;
    runtime.block_on(run(options, load, Arc::new(on_event)))
}

fn serve_error(options: &ServeOptions, message: String) -> Error {
    Error::Serve {
        address: format!("{}:{}", options.host, options.port),
        message,
    }
}

/// Each database opens read-only and has a schema, and names are unique
/// and plain, before anything loads.
fn check_databases(databases: &[(String, PathBuf)]) -> Result<()> {
    if databases.is_empty() {
        return Err(Error::invalid("databases", "serve at least one database"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, path) in databases {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !plain {
            return Err(Error::invalid(
                "database name",
                format!("{name:?} must be letters, digits, '_', '-' or '.'"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                "database name",
                format!("{name:?} names two databases"),
            ));
        }
        DatabaseHandle::without_grammar(path)?;
    }
    Ok(())
}

type OnEvent = Arc<dyn Fn(ServeEvent) + Send + Sync>;

async fn run(
    options: ServeOptions,
    load: impl FnOnce() -> Result<Engine> + Send + 'static,
    on_event: OnEvent,
) -> Result<()> {
    let address = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| serve_error(&options, format!("cannot listen there: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| serve_error(&options, e.to_string()))?;
    let grace = options.shutdown_grace;
    let state = Arc::new(AppState::new(options));
    let app = router(Arc::clone(&state));
    on_event(ServeEvent::Listening(local));

    // Loading on its own thread; its failure stops the server.
    let failure: Arc<Mutex<Option<Error>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let state = Arc::clone(&state);
        let failure = Arc::clone(&failure);
        let stop = Arc::clone(&stop);
        let on_event = Arc::clone(&on_event);
        std::thread::Builder::new()
            .name("sqlagent-load".into())
            .spawn(move || {
                let started = Instant::now();
                match load_all(&state, load) {
                    Ok(ready) => {
                        let _ = state.ready.set(ready);
                        on_event(ServeEvent::Ready {
                            seconds: started.elapsed().as_secs_f64(),
                        });
                    }
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        stop.notify_one();
                    }
                }
            })
            .map_err(|e| Error::Serve {
                address: local.to_string(),
                message: format!("starting the loader: {e}"),
            })?;
    }

    let shutdown = {
        let state = Arc::clone(&state);
        let stop = Arc::clone(&stop);
        let on_event = Arc::clone(&on_event);
        async move {
            tokio::select! {
                _ = signal() => on_event(ServeEvent::ShuttingDown),
                _ = stop.notified() => {}
            }
            state.stopping.store(true, Ordering::SeqCst);
            // Requests in flight get `grace` to finish, then are cancelled.
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                state.cancel_all();
            });
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    state.cancel_all();
    let pool_state = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || pool_state.pool.shutdown()).await;
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    served.map_err(|e| Error::Serve {
        address: local.to_string(),
        message: e.to_string(),
    })
}

/// Loads the engine, then each database with its grammar.
fn load_all(state: &AppState, load: impl FnOnce() -> Result<Engine>) -> Result<Ready> {
    let engine = load()?;
    let options = &state.options;
    // A kept prefix for every worker and database.
    let wanted = options.workers + options.databases.len();
    if engine.prompt_cache().capacity() < wanted {
        engine.prompt_cache().set_capacity(wanted);
    }
    if let Some(adapter) = &options.ask.adapter {
        engine.adapter_slot(adapter)?;
    }
    let mut databases = BTreeMap::new();
    for (name, path) in &options.databases {
        databases.insert(name.clone(), engine.database(path, &options.grammar)?);
    }
    Ok(Ready {
        engine: Arc::new(engine),
        databases,
    })
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Every route, behind the key check and the request counters.
fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.options.limits.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/sql", post(routes::sql))
        .route("/v1/models", get(routes::models))
        .route("/v1/databases", get(routes::databases))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/", get(page::index))
        .route("/page.js", get(page::script))
        .route("/page.css", get(page::style))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            observe,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The key check (for `/v1/*` and `/metrics`) and the request counters.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let guarded = path.starts_with("/v1/") || path == "/metrics";
    let response = if guarded && !state.authorized(request.headers()) {
        ApiError::unauthorized().into_response()
    } else {
        next.run(request).await
    };
    state.metrics.record(
        &endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
