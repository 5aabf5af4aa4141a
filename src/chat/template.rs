//! Chat templates: how a list of [`Message`]s becomes the one string the
//! tokenizer sees.
//!
//! Two kinds exist:
//! - the Llama 3 Instruct format, built in and written in plain Rust, so the
//!   default model needs no template file and no Jinja engine at run time;
//! - any Hugging Face Jinja template (from `tokenizer_config.json`, a
//!   `chat_template.jinja` file, or GGUF metadata `tokenizer.chat_template`),
//!   rendered with minijinja set up the way `transformers` sets up Jinja2:
//!   `trim_blocks` and `lstrip_blocks` on, Python string/dict methods
//!   (`.strip()`, `.items()`, … via `minijinja_contrib::pycompat`),
//!   `raise_exception(msg)`, `strftime_now(fmt)` and a `tojson` filter that
//!   writes JSON like Python's `json.dumps` (no HTML escaping).
//!
//! The golden tests in `tests/it/chat.rs` check both against real templates
//! byte for byte.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{context, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may know more roles).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new("assistant", content)
    }
}

/// Name of the one template inside a [`JinjaTemplate`]'s environment.
const TEMPLATE_NAME: &str = "chat_template";

/// Context string used for templates read from GGUF metadata.
pub const GGUF_CONTEXT: &str = "GGUF tokenizer.chat_template";

/// Turns a conversation into the prompt string a model was trained on.
///
/// Cheap to clone; `Send + Sync`, so one template can serve many requests.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// The Llama 3 Instruct format, in Rust.
    Llama3,
    /// A Hugging Face Jinja template.
    Jinja(Box<JinjaTemplate>),
}

#[derive(Clone, Debug)]
struct JinjaTemplate {
    env: Environment<'static>,
    /// What logs and reports call it (a file path or [`GGUF_CONTEXT`]).
    name: String,
    /// Where the template came from, for errors (a file path).
    context: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The Llama 3 Instruct format:
    ///
    /// ```text
    /// <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content.trim()}<|eot_id|>…
    /// ```
    ///
    /// followed by `<|start_header_id|>assistant<|end_header_id|>\n\n` when a
    /// generation prompt is asked for. Identical to what the Jinja template
    /// shipped in Meta-Llama-3-*-Instruct's `tokenizer_config.json` renders
    /// (that template always adds the assistant header).
    pub fn llama3() -> Self {
        ChatTemplate { kind: Kind::Llama3 }
    }

    /// A Hugging Face Jinja chat template. `context` names where `source`
    /// came from (a file path, or [`GGUF_CONTEXT`]) and appears in every
    /// error. `bos_token`/`eos_token` are the strings the template sees as
    /// `bos_token` and `eos_token`.
    ///
    /// Parse errors are reported here, not at render time.
    pub fn from_jinja(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        context: &str,
    ) -> Result<Self> {
        Self::jinja(source, bos_token, eos_token, context, context)
    }

    /// [`ChatTemplate::from_jinja`] with a short `name` apart from the
    /// `context` that errors give.
    fn jinja(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        name: &str,
        context: &str,
    ) -> Result<Self> {
        let mut env = Environment::new();
        // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True);
        // Jinja2's keep_trailing_newline defaults to False, as does minijinja's.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(super::TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| template_error(context, &e))?;
        Ok(ChatTemplate {
            kind: Kind::Jinja(Box::new(JinjaTemplate {
                env,
                name: name.to_owned(),
                context: context.to_owned(),
                bos_token: bos_token.to_owned(),
                eos_token: eos_token.to_owned(),
            })),
        })
    }

    /// The template of a Hugging Face `tokenizer_config.json`.
    ///
    /// `chat_template` may be a string or a list of `{name, template}` (the
    /// one named `default` is used). When the config has none, a
    /// `chat_template.jinja` (newer `transformers`) or `chat_template.json`
    /// next to it is used. `bos_token`/`eos_token` may be strings or
    /// `{"content": …}` objects. `Ok(None)` when no template is found.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Template {
                context: path.display().to_string(),
                message: format!("not valid JSON: {e}"),
            })?;
        let bos = special_token(&config, "bos_token");
        let eos = special_token(&config, "eos_token");
        let context = path.display().to_string();

        if let Some(source) = template_from_value(config.get("chat_template"), &context)? {
            return Self::from_jinja(&source, &bos, &eos, &context).map(Some);
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?;
            return Self::from_jinja(&source, &bos, &eos, &jinja.display().to_string()).map(Some);
        }
        let json = dir.join("chat_template.json");
        if json.is_file() {
            let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
            let context = json.display().to_string();
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Template {
                    context: context.clone(),
                    message: format!("not valid JSON: {e}"),
                })?;
            if let Some(source) = template_from_value(value.get("chat_template"), &context)? {
                return Self::from_jinja(&source, &bos, &eos, &context).map(Some);
            }
        }
        Ok(None)
    }

    /// The template stored in GGUF metadata (`tokenizer.chat_template`), with
    /// BOS/EOS strings looked up from `tokenizer.ggml.tokens` and the
    /// `tokenizer.ggml.{bos,eos}_token_id` keys. `Ok(None)` when the file has
    /// no template. Errors name `path`, the GGUF file.
    pub fn from_gguf(
        content: &candle_core::quantized::gguf_file::Content,
        path: &Path,
    ) -> Result<Option<Self>> {
        let Some(value) = content.metadata.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let context = format!("{} ({GGUF_CONTEXT})", path.display());
        let source = value.to_string().map_err(|_| Error::Template {
            context: context.clone(),
            message: "not a string".into(),
        })?;
        let token = |key: &str| -> String {
            let tokens = content
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok());
            let id = content.metadata.get(key).and_then(|v| v.to_u32().ok());
            match (tokens, id) {
                (Some(tokens), Some(id)) => tokens
                    .get(id as usize)
                    .and_then(|t| t.to_string().ok())
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            }
        };
        let bos = token("tokenizer.ggml.bos_token_id");
        let eos = token("tokenizer.ggml.eos_token_id");
        Self::jinja(source, &bos, &eos, GGUF_CONTEXT, &context).map(Some)
    }

    /// Render a conversation. With `add_generation_prompt`, the result ends
    /// with the header of an assistant turn, ready for generation.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match &self.kind {
            Kind::Llama3 => Ok(render_llama3(messages, add_generation_prompt)),
            Kind::Jinja(t) => {
                let template = t
                    .env
                    .get_template(TEMPLATE_NAME)
                    .map_err(|e| template_error(&t.context, &e))?;
                template
                    .render(context! {
                        messages => messages,
                        bos_token => &t.bos_token,
                        eos_token => &t.eos_token,
                        add_generation_prompt => add_generation_prompt,
                    })
                    .map_err(|e| template_error(&t.context, &e))
            }
        }
    }

    /// True for [`ChatTemplate::llama3`].
    pub fn is_builtin_llama3(&self) -> bool {
        matches!(self.kind, Kind::Llama3)
    }

    /// A short name for logs: `llama3 (built-in)`, or where the Jinja
    /// template came from.
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Llama3 => "llama3 (built-in)",
            Kind::Jinja(t) => &t.name,
        }
    }
}

fn render_llama3(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::from("<|begin_of_text|>");
    for m in messages {
        out.push_str("<|start_header_id|>");
        out.push_str(&m.role);
        out.push_str("<|end_header_id|>\n\n");
        out.push_str(m.content.trim());
        out.push_str("<|eot_id|>");
    }
    if add_generation_prompt {
        out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
    out
}

/// `chat_template` as found in a config: a string, a list of
/// `{name, template}` (use `default`), or absent/null.
fn template_from_value(value: Option<&serde_json::Value>, context: &str) -> Result<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(list)) => {
            let mut names = Vec::new();
            for item in list {
                let name = item.get("name").and_then(|n| n.as_str()).unwrap_or("");
                if name == "default" {
                    if let Some(t) = item.get("template").and_then(|t| t.as_str()) {
                        return Ok(Some(t.to_owned()));
                    }
                }
                names.push(name.to_owned());
            }
            Err(Error::Template {
                context: context.to_owned(),
                message: format!(
                    "chat_template lists templates [{}] but none named \"default\"",
                    names.join(", ")
                ),
            })
        }
        Some(other) => Err(Error::Template {
            context: context.to_owned(),
            message: format!("chat_template must be a string or a list, found {other}"),
        }),
    }
}

/// `bos_token`/`eos_token` in a tokenizer config: a string, an
/// `{"content": …}` object (a serialized `AddedToken`), or absent.
fn special_token(config: &serde_json::Value, key: &str) -> String {
    match config.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(obj @ serde_json::Value::Object(_)) => obj
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

/// A minijinja error as [`Error::Template`], with its cause chain.
fn template_error(context: &str, err: &minijinja::Error) -> Error {
    Error::Template {
        context: context.to_owned(),
        message: error_chain(err),
    }
}

/// A minijinja error and its causes on one line.
pub(crate) fn error_chain(err: &minijinja::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

/// `raise_exception(msg)`: templates call it to reject a conversation
/// (e.g. roles not alternating). Becomes an error of the render call.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {message}"),
    ))
}

/// `strftime_now(fmt)`: the current date/time (UTC) formatted like Python's
/// `datetime.strftime`. Llama 3.1 templates print `strftime_now("%d %b %Y")`.
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs)
}

/// Month names in English (chat templates' `strftime`, synthesized
/// questions).
pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Format `unix_secs` (UTC) with the common C `strftime` directives:
/// `%Y %y %m %d %e %H %I %M %S %p %b %B %h %a %A %j %w %F %T %D %%`.
/// Unknown directives are copied through unchanged.
pub(crate) fn strftime(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let weekday_name = WEEKDAYS[weekday];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('m') => write!(out, "{month:02}"),
            Some('d') => write!(out, "{day:02}"),
            Some('e') => write!(out, "{day:>2}"),
            Some('H') => write!(out, "{hour:02}"),
            Some('I') => write!(out, "{hour12:02}"),
            Some('M') => write!(out, "{minute:02}"),
            Some('S') => write!(out, "{second:02}"),
            Some('p') => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            Some('b') | Some('h') => write!(out, "{}", &month_name[..3]),
            Some('B') => write!(out, "{month_name}"),
            Some('a') => write!(out, "{}", &weekday_name[..3]),
            Some('A') => write!(out, "{weekday_name}"),
            Some('j') => write!(out, "{day_of_year:03}"),
            Some('w') => write!(out, "{weekday}"),
            Some('F') => write!(out, "{year}-{month:02}-{day:02}"),
            Some('T') => write!(out, "{hour:02}:{minute:02}:{second:02}"),
            Some('D') => write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic
/// Gregorian (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01 (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `tojson` filter as `transformers` defines it:
/// `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
/// sort_keys=sort_keys)`. Unlike minijinja's built-in it does not escape
/// HTML characters, and it uses Python's default separators.
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_owned()),
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ))
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let options = JsonOptions {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &options, 0)?;
    Ok(out)
}

struct JsonOptions {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn write_json(
    out: &mut String,
    value: &Value,
    o: &JsonOptions,
    level: usize,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&value.to_string()),
        ValueKind::String | ValueKind::Plain => {
            write_json_str(out, &value.to_string(), o.ensure_ascii)
        }
        ValueKind::Bytes => {
            let text = String::from_utf8_lossy(value.as_bytes().unwrap_or_default()).into_owned();
            write_json_str(out, &text, o.ensure_ascii)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), &items, o, level, |out, item, o, level| {
                write_json(out, item, o, level)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = match key.as_str() {
                    Some(s) => s.to_owned(),
                    None if key.is_none() => "null".to_owned(),
                    None => key.to_string(),
                };
                entries.push((key, item));
            }
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(
                out,
                ('{', '}'),
                &entries,
                o,
                level,
                |out, (key, item), o, level| {
                    write_json_str(out, key, o.ensure_ascii);
                    out.push_str(&o.key_sep);
                    write_json(out, item, o, level)
                },
            )?;
        }
        ValueKind::Invalid => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: invalid value {value:?}"),
            ))
        }
        // `ValueKind` is non-exhaustive; anything new is written as its text.
        _ => write_json_str(out, &value.to_string(), o.ensure_ascii),
    }
    Ok(())
}

/// `[a, b]` / `{k: v}` with Python's layout rules: empty containers stay
/// `[]`/`{}`; with an indent, one item per line.
fn write_container<T>(
    out: &mut String,
    (open, close): (char, char),
    items: &[T],
    o: &JsonOptions,
    level: usize,
    mut write_item: impl FnMut(
        &mut String,
        &T,
        &JsonOptions,
        usize,
    ) -> std::result::Result<(), minijinja::Error>,
) -> std::result::Result<(), minijinja::Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&o.item_sep);
        }
        newline(out, level + 1);
        write_item(out, item, o, level + 1)?;
    }
    newline(out, level);
    out.push(close);
    Ok(())
}

/// A JSON string literal escaped like Python's `json.dumps`.
fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jinja(source: &str) -> ChatTemplate {
        ChatTemplate::from_jinja(source, "<s>", "</s>", "test").expect("template parses")
    }

    #[test]
    fn templates_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
        assert_send_sync::<crate::chat::PromptSpec>();
    }

    #[test]
    fn llama3_builtin_layout() {
        let t = ChatTemplate::llama3();
        let out = t
            .render(&[Message::system(" sys \n"), Message::user("hi")], true)
            .expect("renders");
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let no_gen = t.render(&[Message::user("hi")], false).expect("renders");
        assert!(no_gen.ends_with("hi<|eot_id|>"));
        assert!(t.is_builtin_llama3());
        assert_eq!(t.name(), "llama3 (built-in)");
    }

    #[test]
    fn jinja_sees_tokens_and_generation_flag() {
        let t = jinja("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m['content'] }};{% endfor %}{% if add_generation_prompt %}A:{% endif %}{{ eos_token }}");
        assert_eq!(
            t.render(&[Message::user("q")], true).expect("renders"),
            "<s>user:q;A:</s>"
        );
        assert_eq!(
            t.render(&[Message::user("q")], false).expect("renders"),
            "<s>user:q;</s>"
        );
        assert!(!t.is_builtin_llama3());
        assert_eq!(t.name(), "test");
    }

    #[test]
    fn jinja_trims_blocks_like_transformers() {
        // trim_blocks drops the newline after a tag; lstrip_blocks the indent before it.
        let t = jinja("{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n");
        assert_eq!(
            t.render(&[Message::user("a"), Message::user("b")], false)
                .expect("renders"),
            "[a]\n[b]\n"
        );
    }

    #[test]
    fn jinja_python_string_methods() {
        let t = jinja(
            "{{ messages[0].content.strip().upper() }}|{{ messages[0].content.startswith(' x') }}",
        );
        assert_eq!(
            t.render(&[Message::user(" x y ")], false).expect("renders"),
            "X Y|True"
        );
    }

    #[test]
    fn parse_error_names_context() {
        let err = ChatTemplate::from_jinja("{% for %}", "", "", "some/file.json").unwrap_err();
        match err {
            Error::Template { context, .. } => assert_eq!(context, "some/file.json"),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = jinja("{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}ok");
        assert_eq!(
            t.render(&[Message::user("q")], false).expect("renders"),
            "ok"
        );
        let err = t.render(&[Message::system("s")], false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("roles must alternate"), "{text}");
        assert!(matches!(err, Error::Template { .. }));
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-23 14:05:09 UTC, a Tuesday, day 205 of a leap year.
        let t = 1_721_743_509;
        assert_eq!(strftime("%d %b %Y", t), "23 Jul 2024");
        assert_eq!(strftime("%A %B %e, %y", t), "Tuesday July 23, 24");
        assert_eq!(strftime("%F %T %j %w", t), "2024-07-23 14:05:09 205 2");
        assert_eq!(strftime("%I:%M %p %% %Q", t), "02:05 PM % %Q");
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
        assert_eq!(strftime("%Y-%m-%d", -86_400), "1969-12-31");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = jinja("{{ messages[0] | tojson }}");
        assert_eq!(
            t.render(&[Message::user("<a & 'b'> \"é\"\n")], false)
                .expect("renders"),
            r#"{"role": "user", "content": "<a & 'b'> \"é\"\n"}"#
        );
        let t = jinja("{{ messages | tojson(indent=2) }}|{{ [] | tojson }}|{{ {'b': 1, 'a': [true, none]} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}");
        assert_eq!(
            t.render(&[Message::user("x")], false).expect("renders"),
            "[\n  {\n    \"role\": \"user\",\n    \"content\": \"x\"\n  }\n]|[]|{\"a\": [true, null], \"b\": 1}|\"\\u00e9\""
        );
        let t = jinja("{{ {'a': 1, 'b': 2} | tojson(separators=[',', ':']) }}");
        assert_eq!(t.render(&[], false).expect("renders"), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn config_template_variants() {
        let ctx = "cfg";
        assert_eq!(template_from_value(None, ctx).expect("ok"), None);
        let list = serde_json::json!([
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]);
        assert_eq!(
            template_from_value(Some(&list), ctx)
                .expect("ok")
                .as_deref(),
            Some("D")
        );
        let no_default = serde_json::json!([{"name": "tool_use", "template": "T"}]);
        let err = template_from_value(Some(&no_default), ctx).unwrap_err();
        assert!(err.to_string().contains("tool_use"), "{err}");
        assert!(template_from_value(Some(&serde_json::json!(3)), ctx).is_err());

        let config = serde_json::json!({
            "bos_token": {"__type": "AddedToken", "content": "<s>"},
            "eos_token": "</s>"
        });
        assert_eq!(special_token(&config, "bos_token"), "<s>");
        assert_eq!(special_token(&config, "eos_token"), "</s>");
        assert_eq!(special_token(&config, "pad_token"), "");
    }

    #[test]
    fn tokenizer_config_file_and_sibling_jinja() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("tokenizer_config.json");
        std::fs::write(&config, r#"{"bos_token": "<s>"}"#).expect("write");
        assert!(ChatTemplate::from_tokenizer_config(&config)
            .expect("reads")
            .is_none());
        std::fs::write(
            dir.path().join("chat_template.jinja"),
            "{{ bos_token }}{{ messages[0].content }}\n",
        )
        .expect("write");
        let t = ChatTemplate::from_tokenizer_config(&config)
            .expect("reads")
            .expect("has template");
        assert_eq!(
            t.render(&[Message::user("x")], true).expect("renders"),
            "<s>x"
        );
        assert!(t.name().ends_with("chat_template.jinja"));

        std::fs::write(&config, "{not json").expect("write");
        assert!(matches!(
            ChatTemplate::from_tokenizer_config(&config),
            Err(Error::Template { .. })
        ));
        assert!(matches!(
            ChatTemplate::from_tokenizer_config(&dir.path().join("missing.json")),
            Err(Error::Io { .. })
        ));
    }
}
