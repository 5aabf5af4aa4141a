//! OpenAI's two generation endpoints. `/v1/chat/completions` with a
//! database answers the last user message with one grammar-constrained
//! SQL query, built with the same prompt as `ask`; `/v1/completions`
//! continues a raw prompt (under a database's grammar only when `db` is
//! given). Both stream as server-sent events in OpenAI's chunk format,
//! ending with `data: [DONE]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api_error::ApiError;
use super::routes::{adapter_for_model, check_max_tokens, check_question, database, parse_body};
use super::state::{AppState, Ticket};
use crate::agent::{Answer, Completion, CompletionRequest, Listener};
use crate::generate::{SamplingParams, StopReason};
use crate::Error;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

impl StopField {
    fn to_vec(&self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s.clone()],
            StopField::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// What both endpoints take besides their prompt.
#[derive(Debug, Deserialize)]
struct Common {
    model: Option<String>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    stop: Option<StopField>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<usize>,
    db: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    prompt: PromptField,
    #[serde(flatten)]
    common: Common,
}

/// The request's sampling, from the server's defaults.
fn sampling(state: &AppState, c: &Common) -> Result<SamplingParams, ApiError> {
    let mut s = state.options.ask.sampling;
    if let Some(t) = c.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        s.temperature = t;
    }
    if let Some(p) = c.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid("top_p", "top_p must be in (0, 1]"));
        }
        s.top_p = (p < 1.0).then_some(p);
    }
    if let Some(seed) = c.seed {
        s.seed = seed;
    }
    let (param, max) = match (c.max_completion_tokens, c.max_tokens) {
        (Some(n), _) => ("max_completion_tokens", Some(n)),
        (None, n) => ("max_tokens", n),
    };
    if let Some(n) = max {
        check_max_tokens(state, n, param)?;
        s.max_tokens = n;
    }
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            "this server writes one choice per request (n = 1)",
        ));
    }
    Ok(s)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        StopReason::EndToken | StopReason::StopText => "stop",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// What a worker sends a streaming handler.
enum Streamed<T> {
    Text(String),
    Done(crate::Result<T>),
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let state = &state;
    let request: ChatRequest = parse_body(state, body)?;
    let ready = state.ready()?;
    let c = &request.common;
    let db = Arc::clone(database(ready, c.db.as_deref())?);
    let adapter = adapter_for_model(state, ready, c.model.as_deref())?;
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_ref())
        .map(Content::text)
        .ok_or_else(|| ApiError::invalid("messages", "no user message to answer"))?;
    check_question(state, &question, "messages")?;
    let mut options = state.options.ask_with(adapter);
    options.sampling = sampling(state, c)?;
    // The reply is the SQL; with retries the server runs it to learn
    // whether to write another.
    options.execute = options.retries > 0;
    let model = c
        .model
        .clone()
        .unwrap_or_else(|| state.options.model_name.clone());
    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let id = format!("chatcmpl-{:x}", rand::random::<u64>());
    let engine = Arc::clone(&ready.engine);
    let ticket = Ticket::new(state);
    let metrics_state = Arc::clone(state);
    let ask = move |flag: &crate::generate::CancelFlag| {
        let mut listener = Listener {
            on_text: None,
            cancel: Some(flag),
        };
        let answer = engine.ask(&db, &question, &options, &mut listener);
        if let Ok(a) = &answer {
            let (p, g) = tokens_of(a);
            metrics_state.metrics.tokens(p, g);
        }
        answer
    };
    if !c.stream {
        let rx = ticket.submit(ask)?;
        let answer = match rx.await {
            Ok(Ok(a)) => a,
            Ok(Err(Error::Cancelled)) | Err(_) => return Err(ticket.stopped_error()),
            Ok(Err(e)) => return Err(e.into()),
        };
        ticket.finish();
        let (content, stop) = chat_reply(&answer)?;
        let (p, g) = tokens_of(&answer);
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": now(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": null,
                "finish_reason": finish_reason(stop),
            }],
            "usage": usage(p, g),
        });
        return Ok(Json(body).into_response());
    }

    // Streaming: the role at once; the query once SQLite has accepted it
    // (the grammar's repairs may take back text already written, and a
    // chunk sent cannot be taken back); then the finish and [DONE].
    let (tx, rx) = mpsc::unbounded_channel::<Streamed<Answer>>();
    ticket.submit(move |flag| {
        let result = ask(flag);
        let _ = tx.send(Streamed::Done(result));
    })?;
    let created = now();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let stream = event_stream(
        first,
        ticket,
        rx,
        |_| json!({}),
        move |done| match done {
            Ok(answer) => match chat_reply(&answer) {
                Ok((content, stop)) => {
                    let (p, g) = tokens_of(&answer);
                    let mut events = vec![
                        chunk(json!({"content": content}), None),
                        chunk(json!({}), Some(finish_reason(stop))),
                    ];
                    if include_usage {
                        let mut u = chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(p, g);
                        events.push(u);
                    }
                    events
                }
                Err(e) => vec![e.body()],
            },
            Err(e) => vec![e.body()],
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The chat reply of an answer: its final SQL, or 422 when there is none.
fn chat_reply(answer: &Answer) -> Result<(String, StopReason), ApiError> {
    let draft = answer.draft();
    if draft.sql.is_empty() {
        let message = answer.error().map_or_else(
            || "no query could be generated".to_string(),
            |e| e.to_string(),
        );
        return Err(ApiError::no_query(message).with_extra(json!({"reply": draft.reply})));
    }
    Ok((draft.sql.clone(), draft.stop))
}

fn tokens_of(answer: &Answer) -> (usize, usize) {
    answer.attempts.iter().fold((0, 0), |(p, g), a| {
        (
            p + a.draft.timings.prompt_tokens,
            g + a.draft.timings.generated_tokens,
        )
    })
}

/// Server-sent events: `first`, then a chunk for each text piece (made by
/// `piece`), then what `last` makes of the result, then `[DONE]`. The
/// ticket lives in the stream: a client that goes away drops it, which
/// cancels the generation.
fn event_stream<T: Send + 'static>(
    first: Value,
    ticket: Ticket,
    rx: mpsc::UnboundedReceiver<Streamed<T>>,
    piece: impl Fn(&str) -> Value + Send + 'static,
    last: impl FnOnce(Result<T, ApiError>) -> Vec<Value> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    use futures_util::StreamExt;
    fn event(v: &Value) -> Event {
        Event::default().data(v.to_string())
    }
    let start = stream::iter([event(&first)]);
    let body = stream::unfold(
        (rx, Some(ticket), Some(last), piece),
        |(mut rx, ticket, last, piece)| async move {
            let (ticket, last) = (ticket?, last?);
            match rx.recv().await {
                Some(Streamed::Text(text)) => {
                    let events = vec![event(&piece(&text))];
                    Some((events, (rx, Some(ticket), Some(last), piece)))
                }
                Some(Streamed::Done(result)) => {
                    let result = match result {
                        Ok(t) => Ok(t),
                        Err(Error::Cancelled) => Err(ticket.stopped_error()),
                        Err(e) => Err(ApiError::from(e)),
                    };
                    ticket.finish();
                    let mut events: Vec<Event> = last(result).iter().map(event).collect();
                    events.push(Event::default().data("[DONE]"));
                    Some((events, (rx, None, None, piece)))
                }
                None => {
                    // Cancelled before a worker took it.
                    let error = ticket.stopped_error();
                    let events = vec![event(&error.body()), Event::default().data("[DONE]")];
                    Some((events, (rx, None, None, piece)))
                }
            }
        },
    );
    start
        .chain(body.flat_map(stream::iter))
        .map(Ok::<_, Infallible>)
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let state = &state;
    let request: CompletionBody = parse_body(state, body)?;
    let ready = state.ready()?;
    let c = &request.common;
    let prompt = match request.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptField::Many(_) => {
            return Err(ApiError::invalid(
                "prompt",
                "this server completes one prompt per request",
            ))
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    let limit = state.options.limits.max_question_chars * 4;
    if prompt.chars().count() > limit {
        return Err(ApiError::too_large(
            Some("prompt"),
            format!("the prompt is longer than this server's limit of {limit} characters"),
        ));
    }
    let db = match &c.db {
        Some(name) => Some(Arc::clone(database(ready, Some(name))?)),
        None => None,
    };
    let adapter = adapter_for_model(state, ready, c.model.as_deref())?;
    let sampling = sampling(state, c)?;
    let stop: Vec<String> = c.stop.as_ref().map_or_else(Vec::new, StopField::to_vec);
    let model = c
        .model
        .clone()
        .unwrap_or_else(|| state.options.model_name.clone());
    let id = format!("cmpl-{:x}", rand::random::<u64>());
    let engine = Arc::clone(&ready.engine);
    let ticket = Ticket::new(state);
    let metrics_state = Arc::clone(state);
    let stream_it = c.stream;
    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    // Under a grammar a repair may take back text already written, and a
    // chunk sent cannot be taken back: the text is then sent whole once
    // the check has passed.
    let held = db.is_some();
    let (tx, rx) = mpsc::unbounded_channel::<Streamed<Completion>>();
    let work = move |flag: &crate::generate::CancelFlag| {
        let text_tx = tx.clone();
        let mut on_text = |piece: &str| {
            if stream_it && !held {
                let _ = text_tx.send(Streamed::Text(piece.to_string()));
            }
        };
        let mut listener = Listener {
            on_text: Some(&mut on_text),
            cancel: Some(flag),
        };
        let result = engine.complete(
            &CompletionRequest {
                prompt: &prompt,
                sampling,
                stop: &stop,
                adapter: adapter.as_deref(),
                db: db.as_deref(),
            },
            &mut listener,
        );
        if let Ok(done) = &result {
            metrics_state
                .metrics
                .tokens(done.timings.prompt_tokens, done.timings.generated_tokens);
            if stream_it && held {
                let _ = tx.send(Streamed::Text(done.text.clone()));
            }
        }
        let _ = tx.send(Streamed::Done(result));
    };
    ticket.submit(work)?;
    if !stream_it {
        let mut rx = rx;
        let done = loop {
            match rx.recv().await {
                Some(Streamed::Text(_)) => continue,
                Some(Streamed::Done(r)) => break Some(r),
                None => break None,
            }
        };
        let completion = match done {
            Some(Ok(c)) => c,
            Some(Err(Error::Cancelled)) | None => return Err(ticket.stopped_error()),
            Some(Err(e)) => return Err(e.into()),
        };
        ticket.finish();
        let body = json!({
            "id": id,
            "object": "text_completion",
            "created": now(),
            "model": model,
            "choices": [{
                "index": 0,
                "text": completion.text,
                "logprobs": null,
                "finish_reason": finish_reason(completion.stop),
            }],
            "usage": usage(completion.timings.prompt_tokens, completion.timings.generated_tokens),
        });
        return Ok(Json(body).into_response());
    }

    let created = now();
    let chunk = move |text: &str, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        })
    };
    let first = chunk("", None);
    let piece = chunk.clone();
    let stream = event_stream(
        first,
        ticket,
        rx,
        move |text| piece(text, None),
        move |result| match result {
            Ok(c) => {
                let mut events = vec![chunk("", Some(finish_reason(c.stop)))];
                if include_usage {
                    let mut u = chunk("", None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(c.timings.prompt_tokens, c.timings.generated_tokens);
                    events.push(u);
                }
                events
            }
            Err(e) => vec![e.body()],
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
