//! Hosted models behind an OpenAI-compatible chat-completions endpoint
//! (Lamini, vLLM, Ollama, OpenAI, …): the same conversation the local model
//! gets, sent as JSON, with a request timeout and retries with exponential
//! backoff on rate limits, server errors and broken connections. The API
//! key comes from an environment variable (or `.env`), never a flag.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::chat::Message;
use crate::error::{Error, Result};

/// Where and how to reach a hosted model.
#[derive(Debug, Clone)]
pub struct HostedOptions {
    /// The API base (`http://localhost:8000/v1`) or the full
    /// `…/chat/completions` URL.
    pub url: String,
    /// The model name the endpoint knows.
    pub model: String,
    /// The API key (read from `key_env`), if any.
    pub api_key: Option<String>,
    /// The environment variable the key comes from (named in errors).
    pub key_env: String,
    /// Limit for one request.
    pub timeout: Duration,
    /// Further tries after a retryable failure.
    pub max_retries: u32,
    /// Wait before the first retry; doubled each time (at most 8 s).
    pub backoff: Duration,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Seed, for endpoints that take one.
    pub seed: u64,
}

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The assistant's text.
    pub text: String,
    /// Tokens generated, when the endpoint reports usage.
    pub completion_tokens: Option<usize>,
    /// Wall time of the successful request (milliseconds).
    pub latency_ms: f64,
    /// Requests made (1 + retries).
    pub requests: u32,
}

/// A client for one endpoint and model.
pub struct HostedClient {
    agent: ureq::Agent,
    endpoint: String,
    options: HostedOptions,
}

impl HostedClient {
    /// A client for `options` (no request is made yet).
    pub fn new(options: HostedOptions) -> Result<Self> {
        let base = options.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid(
                "endpoint",
                format!("{:?} is not an http(s) URL", options.url),
            ));
        }
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let agent = crate::http::agent(&endpoint, options.timeout)?;
        Ok(Self {
            agent,
            endpoint,
            options,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Hosted {
            url: self.endpoint.clone(),
            message: message.into(),
        }
    }

    /// Sends `messages` and returns the reply, retrying what can be retried.
    pub fn chat(&self, messages: &[Message]) -> Result<ChatReply> {
        let o = &self.options;
        let body = json!({
            "model": o.model,
            "messages": messages,
            "temperature": o.temperature,
            "max_tokens": o.max_tokens,
            "seed": o.seed,
            "stream": false,
        });
        let mut wait = o.backoff;
        let mut requests = 0;
        loop {
            requests += 1;
            let start = Instant::now();
            let mut request = self
                .agent
                .post(&self.endpoint)
                .set("Content-Type", "application/json");
            if let Some(key) = &o.api_key {
                request = request.set("Authorization", &format!("Bearer {key}"));
            }
            let retry_after = match request.send_string(&body.to_string()) {
                Ok(response) => {
                    let text = response
                        .into_string()
                        .map_err(|e| self.error(format!("reading the response: {e}")))?;
                    let mut reply = self.parse(&text)?;
                    reply.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
                    reply.requests = requests;
                    return Ok(reply);
                }
                Err(ureq::Error::Status(code @ (401 | 403), _)) => {
                    return Err(Error::HostedAuth {
                        url: self.endpoint.clone(),
                        message: format!(
                        "refused the request ({code}): set {} to a valid API key (environment or .env){}",
                        o.key_env,
                        if o.api_key.is_none() { "; it is not set" } else { "" }
                    ),
                    })
                }
                Err(ureq::Error::Status(code @ (408 | 429 | 500..=599), response)) => {
                    let after = response
                        .header("Retry-After")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if requests > o.max_retries {
                        return Err(self.error(format!(
                            "answered {code} {requests} times; giving up"
                        )));
                    }
                    after
                }
                Err(ureq::Error::Status(code, response)) => {
                    let body = response.into_string().unwrap_or_default();
                    return Err(self.error(format!(
                        "answered {code}: {}",
                        body.chars().take(300).collect::<String>()
                    )));
                }
                Err(ureq::Error::Transport(t)) => {
                    if requests > o.max_retries {
                        return Err(self.error(format!(
                            "{t} (after {requests} tries; is the server running and the URL right?)"
                        )));
                    }
                    None
                }
            };
            let pause = retry_after.unwrap_or(wait).min(Duration::from_secs(8));
            tracing::debug!(?pause, requests, "hosted request failed; retrying");
            std::thread::sleep(pause);
            wait = (wait * 2).min(Duration::from_secs(8));
        }
    }

    /// Reads `choices[0].message.content` and `usage.completion_tokens`.
    fn parse(&self, text: &str) -> Result<ChatReply> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            self.error(format!(
                "the response is not JSON ({e}): {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        let content = v
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .ok_or_else(|| {
                self.error(format!(
                    "the response has no choices[0].message.content: {}",
                    text.chars().take(200).collect::<String>()
                ))
            })?;
        Ok(ChatReply {
            text: content.to_string(),
            completion_tokens: v
                .pointer("/usage/completion_tokens")
                .and_then(|t| t.as_u64())
                .map(|t| t as usize),
            latency_ms: 0.0,
            requests: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> HostedOptions {
        HostedOptions {
            url: url.into(),
            model: "m".into(),
            api_key: None,
            key_env: "OPENAI_API_KEY".into(),
            timeout: Duration::from_secs(1),
            max_retries: 0,
            backoff: Duration::from_millis(1),
            temperature: 0.0,
            max_tokens: 8,
            seed: 1,
        }
    }

    #[test]
    fn endpoint_accepts_a_base_or_the_full_url() {
        let c = HostedClient::new(options("http://h:1/v1/")).unwrap();
        assert_eq!(c.endpoint(), "http://h:1/v1/chat/completions");
        let c = HostedClient::new(options("https://h/v1/chat/completions")).unwrap();
        assert_eq!(c.endpoint(), "https://h/v1/chat/completions");
        let e = HostedClient::new(options("h:1/v1"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("endpoint") && e.contains("not an http(s) URL"),
            "{e}"
        );
    }

    #[test]
    fn replies_are_read_from_choices_and_usage() {
        let c = HostedClient::new(options("http://h/v1")).unwrap();
        let r = c
            .parse(r#"{"choices":[{"message":{"role":"assistant","content":"SELECT 1;"}}],"usage":{"completion_tokens":4}}"#)
            .unwrap();
        assert_eq!(
            (r.text.as_str(), r.completion_tokens),
            ("SELECT 1;", Some(4))
        );
        let e = c.parse(r#"{"error":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("no choices[0].message.content"), "{e}");
        let e = c.parse("<html>").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}
