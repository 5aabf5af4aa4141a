//! Tuning on the hosted Lamini platform: the same training pairs, rendered
//! with the same prompt code as local tuning, sent to `POST /v1/train` as
//! `{"input", "output"}` pairs; the job is then polled at
//! `GET /v1/train/jobs/{job_id}` until it completes or fails. The API key
//! comes from the environment (or `.env`), never a flag.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::job::{schemas_of, Pair};
use crate::chat::{ChatTemplate, PromptSpec};
use crate::error::{Error, Result};

/// Lamini's API base.
pub const DEFAULT_URL: &str = "https://api.lamini.ai";

/// One training pair as Lamini takes it: the full prompt text and the
/// answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaminiPair {
    /// The prompt, rendered with the base model's chat template.
    pub input: String,
    /// The answer as the assistant writes it.
    pub output: String,
}

/// The pairs as Lamini takes them: each rendered with `prompt` and the
/// Llama 3 chat template (the models Lamini tunes), the SQL as the reply.
pub fn render_pairs(pairs: &[Pair], prompt: &PromptSpec) -> Result<Vec<LaminiPair>> {
    let template = ChatTemplate::llama3();
    let schemas = schemas_of(pairs)?;
    pairs
        .iter()
        .enumerate()
        .map(|(i, (item, db))| {
            let messages = prompt
                .messages(&schemas[db], &item.question)
                .map_err(|e| Error::invalid("training pairs", format!("pair {}: {e}", i + 1)))?;
            Ok(LaminiPair {
                input: template.render(&messages, true)?,
                output: prompt.assistant_reply(&item.sql),
            })
        })
        .collect()
}

/// A job's state as Lamini reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job id (Lamini sends a number or a string).
    #[serde(deserialize_with = "id_as_string")]
    pub job_id: String,
    /// `SCHEDULED`, `TRAINING MODEL`, `COMPLETED`, `FAILED`, …
    pub status: String,
    /// The tuned model's name, once saved.
    #[serde(default)]
    pub model_name: Option<String>,
}

fn id_as_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

impl JobStatus {
    /// Whether the job has ended (well or not).
    pub fn is_final(&self) -> bool {
        self.succeeded() || self.failed()
    }

    /// Whether the job produced a model.
    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "COMPLETED" | "PARTIALLY COMPLETED")
    }

    /// Whether the job ended without a model.
    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "FAILED" | "CANCELED" | "CANCELLED")
    }
}

/// Attempts of one request before it fails: a 429, a 5xx, a 408 or a
/// broken connection is tried again after a backoff (1 s, doubling, at
/// most 30 s, or what `Retry-After` asks up to a minute).
pub const LAMINI_ATTEMPTS: usize = 6;

/// A client for Lamini's tuning API.
pub struct LaminiClient {
    agent: ureq::Agent,
    base: String,
    key: String,
    key_env: String,
    first_backoff: Duration,
}

/// A request's failure: whether trying again may help, and what to say.
struct Failure {
    retry: bool,
    retry_after: Option<Duration>,
    error: Box<Error>,
}

impl LaminiClient {
    /// A client for `base` (`https://api.lamini.ai`) with the key read from
    /// `key_env`.
    pub fn new(base: &str, key_env: &str, timeout: Duration) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid(
                "Lamini URL",
                format!("{base:?} is not an http(s) URL"),
            ));
        }
        let key = std::env::var(key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    key_env,
                    "is not set: put your Lamini API key in the environment or in .env",
                )
            })?;
        Ok(Self {
            agent: crate::http::agent(&base, timeout)?,
            base,
            key,
            key_env: key_env.to_string(),
            first_backoff: Duration::from_secs(1),
        })
    }

    /// The same client with a first backoff of `first` between attempts.
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.first_backoff = first;
        self
    }

    /// `request` until it succeeds, fails in a way that retrying cannot
    /// mend, or has failed [`LAMINI_ATTEMPTS`] times.
    fn with_retries(
        &self,
        mut request: impl FnMut() -> std::result::Result<JobStatus, Failure>,
    ) -> std::result::Result<JobStatus, Failure> {
        let mut wait = self.first_backoff;
        let mut attempt = 1;
        loop {
            match request() {
                Err(f) if f.retry && attempt < LAMINI_ATTEMPTS => {
                    let pause = f
                        .retry_after
                        .map(|a| a.min(Duration::from_secs(60)))
                        .unwrap_or(wait);
                    tracing::debug!(?pause, attempt, error = %f.error, "Lamini request failed; retrying");
                    std::thread::sleep(pause);
                    wait = (wait * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Submits a tuning job of `base_model` on `pairs`.
    pub fn submit(
        &self,
        base_model: &str,
        pairs: &[LaminiPair],
        finetune_args: &serde_json::Value,
    ) -> Result<JobStatus> {
        let url = format!("{}/v1/train", self.base);
        let body = json!({
            "model_name": base_model,
            "data": pairs,
            "finetune_args": finetune_args,
        });
        let body = body.to_string();
        self.with_retries(|| {
            let response = self
                .agent
                .post(&url)
                .set("Authorization", &format!("Bearer {}", self.key))
                .set("Content-Type", "application/json")
                .send_string(&body);
            self.parse(&url, response)
        })
        .map_err(|f| *f.error)
    }

    /// The job's current state (retried as [`LAMINI_ATTEMPTS`] says; a job
    /// still unreachable then is [`Error::JobUnreachable`]).
    pub fn status(&self, job_id: &str) -> Result<JobStatus> {
        let url = format!("{}/v1/train/jobs/{job_id}", self.base);
        self.with_retries(|| {
            let response = self
                .agent
                .get(&url)
                .set("Authorization", &format!("Bearer {}", self.key))
                .call();
            self.parse(&url, response)
        })
        .map_err(|f| match *f.error {
            Error::Hosted { url, message } if f.retry => Error::JobUnreachable {
                job_id: job_id.to_string(),
                url,
                message: format!("{message} ({LAMINI_ATTEMPTS} attempts)"),
            },
            other => other,
        })
    }

    fn parse(
        &self,
        url: &str,
        response: std::result::Result<ureq::Response, ureq::Error>,
    ) -> std::result::Result<JobStatus, Failure> {
        let fail = |retry: bool, retry_after: Option<Duration>, message: String| Failure {
            retry,
            retry_after,
            error: Box::new(Error::Hosted {
                url: url.to_string(),
                message,
            }),
        };
        match response {
            Ok(r) => {
                let text = r
                    .into_string()
                    .map_err(|e| fail(true, None, format!("reading the response: {e}")))?;
                serde_json::from_str(&text)
                    .map_err(|e| fail(false, None, format!("not a job status ({e}): {text}")))
            }
            Err(ureq::Error::Status(code @ (401 | 403), _)) => Err(Failure {
                retry: false,
                retry_after: None,
                error: Box::new(Error::HostedAuth {
                    url: url.to_string(),
                    message: format!(
                        "refused the request ({code}): set {} to a valid Lamini API key",
                        self.key_env
                    ),
                }),
            }),
            Err(ureq::Error::Status(code, r)) => {
                let retry = code == 408 || code == 429 || code >= 500;
                let after = r
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = r.into_string().unwrap_or_default();
                Err(fail(retry, after, format!("HTTP {code}: {}", text.trim())))
            }
            Err(ureq::Error::Transport(t)) => Err(fail(true, None, t.to_string())),
        }
    }

    /// Polls the job every `every` until it ends; `on_status` sees each
    /// state. A job that fails is an error naming its id and status.
    pub fn wait(
        &self,
        job_id: &str,
        every: Duration,
        on_status: &mut dyn FnMut(&JobStatus),
    ) -> Result<JobStatus> {
        loop {
            let status = self.status(job_id)?;
            on_status(&status);
            if status.failed() {
                return Err(Error::Hosted {
                    url: format!("{}/v1/train/jobs/{job_id}", self.base),
                    message: format!("tuning job {job_id} ended {}", status.status),
                });
            }
            if status.is_final() {
                return Ok(status);
            }
            std::thread::sleep(every);
        }
    }
}
