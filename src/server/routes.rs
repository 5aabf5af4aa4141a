//! The routes that are not OpenAI's: `/v1/sql` (question → SQL → rows, as
//! `ask` answers), `/v1/models`, `/v1/databases`, `/health`, `/metrics`;
//! and what every handler shares: reading a JSON body, finding the
//! database and the adapter a request names.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::api_error::ApiError;
use super::state::{AppState, Ready, Ticket};
use crate::agent::{Answer, DatabaseHandle, Execution, Listener};
use crate::generate::CancelFlag;
use crate::Error;

/// Reads a JSON body into `T`, naming the field at fault.
pub fn parse_body<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                None,
                format!(
                    "the body is longer than this server's limit of {} bytes",
                    state.options.limits.max_body_bytes
                ),
            )
        } else {
            ApiError::malformed(format!("reading the body: {e}"))
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = !matches!(inner.classify(), serde_json::error::Category::Data);
        if syntax || matches!(path.as_str(), "." | "?" | "") {
            ApiError::malformed(format!("the body is not a valid request: {inner}"))
        } else {
            ApiError::invalid(&path, format!("{path}: {inner}"))
        }
    })
}

/// The database a request names (or the only one served).
pub fn database<'r>(
    ready: &'r Ready,
    name: Option<&str>,
) -> Result<&'r Arc<DatabaseHandle>, ApiError> {
    let served = || {
        ready
            .databases
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => ready.databases.get(name).ok_or_else(|| {
            ApiError::not_found(
                Some("db"),
                "database_not_found",
                format!(
                    "no database named {name:?} is served (served: {})",
                    served()
                ),
            )
        }),
        None if ready.databases.len() == 1 => Ok(ready.databases.values().next().expect("one")),
        None => Err(ApiError::invalid(
            "db",
            format!(
                "several databases are served: name one in \"db\" ({})",
                served()
            ),
        )),
    }
}

/// The adapter a model name stands for: `None` for the base model (or the
/// server's default adapter), the adapter's name for an adapter.
pub fn adapter_for_model(
    state: &AppState,
    ready: &Ready,
    model: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let base = &state.options.model_name;
    match model {
        None => Ok(state.options.ask.adapter.clone()),
        Some(m) if m == base || m.is_empty() => Ok(state.options.ask.adapter.clone()),
        Some(m) if ready.engine.adapter_slot(m).is_ok() => Ok(Some(m.to_string())),
        Some(m) => {
            let mut served = vec![base.clone()];
            served.extend(
                ready
                    .engine
                    .adapters()
                    .iter()
                    .filter(|a| a.slot.is_some())
                    .map(|a| a.name.clone()),
            );
            Err(ApiError::not_found(
                Some("model"),
                "model_not_found",
                format!(
                    "no model named {m:?} is served (served: {})",
                    served.join(", ")
                ),
            ))
        }
    }
}

/// An adapter named by a request, which must be loaded.
pub fn adapter_by_name(ready: &Ready, name: &str, param: &str) -> Result<Option<String>, ApiError> {
    match ready.engine.adapter_slot(name) {
        Ok(_) => Ok(Some(name.to_string())),
        Err(e) => Err(ApiError::not_found(
            Some(param),
            "model_not_found",
            e.to_string(),
        )),
    }
}

/// A question within the server's limit.
pub fn check_question(state: &AppState, question: &str, param: &str) -> Result<(), ApiError> {
    if question.trim().is_empty() {
        return Err(ApiError::invalid(
            param,
            "the question is empty; ask something about the database",
        ));
    }
    let limit = state.options.limits.max_question_chars;
    let n = question.chars().count();
    if n > limit {
        return Err(ApiError::too_large(
            Some(param),
            format!("the question is {n} characters; this server takes at most {limit}"),
        ));
    }
    Ok(())
}

/// A token budget within the server's limit.
pub fn check_max_tokens(state: &AppState, max_tokens: usize, param: &str) -> Result<(), ApiError> {
    let limit = state.options.limits.max_tokens;
    if max_tokens == 0 || max_tokens > limit {
        return Err(ApiError::invalid(
            param,
            format!(
                "{param} must be between 1 and {limit} (this server's limit); got {max_tokens}"
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    question: String,
    db: Option<String>,
    adapter: Option<String>,
    execute: Option<bool>,
    max_rows: Option<usize>,
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
}

/// `POST /v1/sql`: question → SQL → rows, as `ask --format json` answers.
/// With `"stream": true`, server-sent events: `sql` events with the reply
/// as it is written (`{"text"}`; provisional, since a repair may take text
/// back), then one `result` event with the whole answer or one `error`
/// event (the error body with its `status`).
pub async fn sql(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let state = &state;
    let request: SqlRequest = parse_body(state, body)?;
    let ready = state.ready()?;
    let db = Arc::clone(database(ready, request.db.as_deref())?);
    let db_name = match &request.db {
        Some(name) => name.clone(),
        None => ready.databases.keys().next().cloned().unwrap_or_default(),
    };
    check_question(state, &request.question, "question")?;
    let adapter = match &request.adapter {
        Some(name) => adapter_by_name(ready, name, "adapter")?,
        None => state.options.ask.adapter.clone(),
    };
    let mut options = state.options.ask_with(adapter);
    if let Some(execute) = request.execute {
        options.execute = execute;
    }
    if let Some(n) = request.max_rows {
        let cap = state.options.ask.limits.max_rows;
        if n == 0 || n > cap {
            return Err(ApiError::invalid(
                "max_rows",
                format!("max_rows must be between 1 and {cap} (this server's limit); got {n}"),
            ));
        }
        options.limits.max_rows = n;
    }
    if let Some(n) = request.max_tokens {
        check_max_tokens(state, n, "max_tokens")?;
        options.sampling.max_tokens = n;
    }
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        options.sampling.temperature = t;
    }
    if let Some(seed) = request.seed {
        options.sampling.seed = seed;
    }
    let options_max_rows = options.limits.max_rows;
    let engine = Arc::clone(&ready.engine);
    let ticket = Ticket::new(state);
    let question = request.question.clone();
    let metrics_state = Arc::clone(state);
    let ask = move |flag: &CancelFlag, on_text: &mut dyn FnMut(&str)| {
        let mut listener = Listener {
            on_text: Some(on_text),
            cancel: Some(flag),
        };
        let answer = engine.ask(&db, &question, &options, &mut listener);
        if let Ok(a) = &answer {
            for attempt in &a.attempts {
                let t = &attempt.draft.timings;
                metrics_state
                    .metrics
                    .tokens(t.prompt_tokens, t.generated_tokens);
            }
        }
        answer
    };
    let context = SqlContext {
        db: db_name,
        max_rows: options_max_rows,
    };
    if request.stream {
        return sql_events(ticket, ask, context);
    }
    let rx = ticket.submit(move |flag| ask(flag, &mut |_| {}))?;
    let answer = match rx.await {
        Ok(Ok(a)) => a,
        Ok(Err(Error::Cancelled)) | Err(_) => return Err(ticket.stopped_error()),
        Ok(Err(e)) => return Err(e.into()),
    };
    ticket.finish();
    let body = sql_body(&answer, &context)?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// What a `/v1/sql` stream carries from the worker.
enum SqlEvent {
    Text(String),
    Done(crate::Result<Answer>),
}

/// The streamed `/v1/sql`: queued at once (429 when the queue is full,
/// before any event), then `sql` events and the `result` or `error`.
fn sql_events(
    ticket: Ticket,
    ask: impl FnOnce(&CancelFlag, &mut dyn FnMut(&str)) -> crate::Result<Answer> + Send + 'static,
    context: SqlContext,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream::{self, StreamExt};

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<SqlEvent>();
    ticket.submit(move |flag| {
        let pieces = tx.clone();
        let mut on_text = move |piece: &str| {
            let _ = pieces.send(SqlEvent::Text(piece.to_string()));
        };
        let result = ask(flag, &mut on_text);
        let _ = tx.send(SqlEvent::Done(result));
    })?;
    fn error_event(e: &ApiError) -> Event {
        let mut body = e.body();
        body["status"] = json!(e.status.as_u16());
        Event::default().event("error").data(body.to_string())
    }
    let events = stream::unfold(
        (rx, Some(ticket), context),
        |(mut rx, ticket, context)| async move {
            let ticket = ticket?;
            match rx.recv().await {
                Some(SqlEvent::Text(text)) => {
                    let event = Event::default()
                        .event("sql")
                        .data(json!({ "text": text }).to_string());
                    Some((event, (rx, Some(ticket), context)))
                }
                Some(SqlEvent::Done(result)) => {
                    let event = match result {
                        Ok(answer) => match sql_body(&answer, &context) {
                            Ok(body) => Event::default().event("result").data(body.to_string()),
                            Err(e) => error_event(&e),
                        },
                        Err(Error::Cancelled) => error_event(&ticket.stopped_error()),
                        Err(e) => error_event(&ApiError::from(e)),
                    };
                    ticket.finish();
                    Some((event, (rx, None, context)))
                }
                None => {
                    // Cancelled before a worker took it.
                    let event = error_event(&ticket.stopped_error());
                    Some((event, (rx, None, context)))
                }
            }
        },
    );
    Ok(Sse::new(events.map(Ok::<_, std::convert::Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The body of an answer: the SQL, timings, grammar and rows; an answer
/// without rows is the error it ended with, the body beside it.
/// What a `/v1/sql` body says besides the answer.
struct SqlContext {
    /// The database's served name.
    db: String,
    /// The row cap the query ran under.
    max_rows: usize,
}

fn sql_body(answer: &Answer, context: &SqlContext) -> Result<serde_json::Value, ApiError> {
    let draft = answer.draft();
    let mut body = json!({
        "question": draft.question,
        "db": context.db,
        "sql": draft.sql,
        "adapter": answer.adapter.as_ref().map(|a| a.name.clone()),
        "stop": draft.stop,
        "timings": draft.timings,
        "grammar": draft.grammar,
    });
    if answer.attempts.len() > 1 {
        body["attempts"] = json!(answer
            .attempts
            .iter()
            .map(
                |a| json!({"sql": a.draft.sql, "error": a.execution_error().map(|e| e.to_string())})
            )
            .collect::<Vec<_>>());
    }
    match &answer.last().execution {
        Execution::Rows(r) => {
            body["columns"] = json!(r.columns);
            body["rows"] = json!(r.rows);
            body["truncated"] = json!(r.truncated);
            body["max_rows"] = json!(context.max_rows);
            Ok(body)
        }
        Execution::Skipped => Ok(body),
        Execution::Failed(e) | Execution::NotWritten(e) => {
            let error = match e {
                Error::NoQuery { .. } | Error::OutOfTokens { .. } => {
                    ApiError::no_query(e.to_string())
                }
                other => ApiError {
                    code: "query_failed",
                    ..ApiError::no_query(format!("the generated SQL failed: {other}"))
                },
            };
            Err(error.with_extra(body))
        }
    }
}

/// `GET /v1/models`: the base model and each adapter, as OpenAI lists them.
pub async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let created = state.started.elapsed().as_secs();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() - created);
    let mut data = vec![json!({
        "id": state.options.model_name,
        "object": "model",
        "created": created,
        "owned_by": "sqlagent",
        "format": ready.engine.info.format,
        "weight_type": ready.engine.info.weight_type,
        "context_length": ready.engine.info.context_length,
    })];
    for a in ready.engine.adapters() {
        if a.slot.is_some() {
            data.push(json!({
                "id": a.name,
                "object": "model",
                "created": created,
                "owned_by": "sqlagent",
                "parent": state.options.model_name,
                "adapter_dir": a.dir.display().to_string(),
            }));
        }
    }
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// `GET /v1/databases`: each served database's tables and columns.
pub async fn databases(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let data: Vec<_> = ready
        .databases
        .iter()
        .map(|(name, db)| {
            let tables: Vec<_> = db
                .schema()
                .tables
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "view": t.is_view,
                        "rows": t.row_count,
                        "columns": t.columns.iter().map(|c| json!({
                            "name": c.name,
                            "type": c.decl_type,
                            "primary_key": c.primary_key,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"name": name, "tables": tables, "grammar": db.grammar().is_some()})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// `GET /health`: 200 once loaded, 503 while loading or stopping.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.ready() {
        Ok(_) => Json(json!({
            "status": "ok",
            "model": state.options.model_name,
            "databases": state.options.databases.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "workers": state.pool.workers(),
            "busy_workers": state.pool.busy(),
            "queue_depth": state.pool.queued(),
            "in_flight": state.in_flight(),
            "uptime_s": state.started.elapsed().as_secs(),
        }))
        .into_response(),
        Err(e) => {
            let status = if state.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                "shutting down"
            } else {
                "loading"
            };
            let mut r = e.into_response();
            *r.body_mut() = axum::body::Body::from(json!({"status": status}).to_string());
            r
        }
    }
}

/// `GET /metrics`: Prometheus's text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.gauges()),
    )
        .into_response()
}

/// Any other route.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::not_found(None, "not_found", format!("no route {}", uri.path())).into_response()
}

/// A known route with another method.
pub async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
