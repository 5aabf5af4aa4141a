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

/// A client for Lamini's tuning API.
pub struct LaminiClient {
    agent: ureq::Agent,
    base: String,
    key: String,
    key_env: String,
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
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
            base,
            key,
            key_env: key_env.to_string(),
        })
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
        let response = self
            .agent
            .post(&url)
            .set("Authorization", &format!("Bearer {}", self.key))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        self.parse(&url, response)
    }

    /// The job's current state.
    pub fn status(&self, job_id: &str) -> Result<JobStatus> {
        let url = format!("{}/v1/train/jobs/{job_id}", self.base);
        let response = self
            .agent
            .get(&url)
            .set("Authorization", &format!("Bearer {}", self.key))
            .call();
        self.parse(&url, response)
    }

    fn parse(
        &self,
        url: &str,
        response: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<JobStatus> {
        let fail = |message: String| Error::Hosted {
            url: url.to_string(),
            message,
        };
        match response {
            Ok(r) => {
                let text = r
                    .into_string()
                    .map_err(|e| fail(format!("reading the response: {e}")))?;
                serde_json::from_str(&text)
                    .map_err(|e| fail(format!("not a job status ({e}): {text}")))
            }
            Err(ureq::Error::Status(code @ (401 | 403), _)) => Err(Error::HostedAuth {
                url: url.to_string(),
                message: format!(
                    "refused the request ({code}): set {} to a valid Lamini API key",
                    self.key_env
                ),
            }),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                Err(fail(format!("HTTP {code}: {}", text.trim())))
            }
            Err(ureq::Error::Transport(t)) => Err(fail(t.to_string())),
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
