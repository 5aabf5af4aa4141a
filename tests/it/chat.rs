//! Integration tests: chat templates against the real templates of the
//! fixture models, and the text-to-SQL prompt files in `prompts/`.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use sqlagent::chat::{ChatTemplate, Message, PromptSpec};
use sqlagent::sql::{Column, Schema, Table};
use sqlagent::Error;

use crate::common;

// ---------------------------------------------------------------- templates

/// The Jinja template of the real Meta-Llama-3 Instruct `tokenizer_config.json`.
fn llama3_config_template() -> Option<ChatTemplate> {
    let dir = common::llama3_tokenizer_dir()?;
    let template = ChatTemplate::from_tokenizer_config(&dir.join("tokenizer_config.json"))
        .expect("tokenizer_config.json reads")
        .expect("tokenizer_config.json has a chat_template");
    Some(template)
}

fn smollm2_gguf_content() -> Option<Content> {
    let path = common::smollm2_gguf()?;
    let mut file = File::open(&path).expect("open GGUF");
    Some(Content::read(&mut file).expect("read GGUF metadata"))
}

fn conversations() -> Vec<Vec<Message>> {
    let tricky = "  SELECT \"top genre\", '<|eot_id|>' FROM t WHERE x = '{{ y }}' -- ü 漢字 \t\n\n";
    vec![
        vec![
            Message::system("You write SQL."),
            Message::user("How many songs are there?"),
        ],
        vec![
            Message::system("You write SQL."),
            Message::user("How many songs are there?"),
            Message::assistant("SELECT COUNT(*) FROM songs;"),
        ],
        vec![Message::user("Which artist has the most songs?")],
        vec![
            Message::system("\n  Leading and trailing whitespace.  \n"),
            Message::user(tricky),
            Message::assistant(tricky),
            Message::user("{% raw %}%}{{ \\n \" ' & < > é"),
        ],
    ]
}

#[test]
fn llama3_config_template_matches_builtin_byte_for_byte() {
    let Some(jinja) = llama3_config_template() else {
        return;
    };
    let builtin = ChatTemplate::llama3();
    for messages in conversations() {
        // The real template always appends the assistant header.
        let want = builtin.render(&messages, true).expect("built-in renders");
        let got = jinja.render(&messages, true).expect("Jinja renders");
        assert_eq!(got, want, "conversation {messages:?}");
        assert!(got.starts_with("<|begin_of_text|><|start_header_id|>"));
    }
}

#[test]
fn llama3_builtin_without_generation_prompt_ends_after_last_turn() {
    let messages = &conversations()[1];
    let full = ChatTemplate::llama3()
        .render(messages, true)
        .expect("renders");
    let open = ChatTemplate::llama3()
        .render(messages, false)
        .expect("renders");
    assert_eq!(
        format!("{open}<|start_header_id|>assistant<|end_header_id|>\n\n"),
        full
    );
    assert!(open.ends_with("SELECT COUNT(*) FROM songs;<|eot_id|>"));
}

/// `chat_prompt` of `../shared/fixtures/smollm2-reference.json`: rendered by
/// `transformers` with the GGUF's own template, `add_generation_prompt=True`.
const SMOLLM2_SYSTEM: &str = "You are a SQLite expert. Schema:\nCREATE TABLE songs (title TEXT, artist TEXT, \"top genre\" TEXT, year INTEGER, popularity INTEGER);\nAnswer with one SQL query.";
const SMOLLM2_USER: &str = "Which artist has the most songs?";
const SMOLLM2_RENDERED: &str = "<|im_start|>system\nYou are a SQLite expert. Schema:\nCREATE TABLE songs (title TEXT, artist TEXT, \"top genre\" TEXT, year INTEGER, popularity INTEGER);\nAnswer with one SQL query.<|im_end|>\n<|im_start|>user\nWhich artist has the most songs?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn smollm2_gguf_template_matches_transformers_reference() {
    let Some(content) = smollm2_gguf_content() else {
        return;
    };
    let messages = [Message::system(SMOLLM2_SYSTEM), Message::user(SMOLLM2_USER)];

    // As the brief's recipe reads it: the metadata string through from_jinja.
    let source = content.metadata["tokenizer.chat_template"]
        .to_string()
        .expect("chat template is a string");
    let template = ChatTemplate::from_jinja(
        source,
        "<|im_start|>",
        "<|im_end|>",
        "GGUF tokenizer.chat_template",
    )
    .expect("template parses");
    assert_eq!(
        template.render(&messages, true).expect("renders"),
        SMOLLM2_RENDERED
    );

    // And through from_gguf, which also looks up BOS/EOS.
    let from_gguf = ChatTemplate::from_gguf(&content, Path::new("model.gguf"))
        .expect("template parses")
        .expect("GGUF has a template");
    assert_eq!(from_gguf.name(), "GGUF tokenizer.chat_template");
    assert_eq!(
        from_gguf.render(&messages, true).expect("renders"),
        SMOLLM2_RENDERED
    );
    let open = from_gguf.render(&messages, false).expect("renders");
    assert_eq!(format!("{open}<|im_start|>assistant\n"), SMOLLM2_RENDERED);
}

#[test]
fn smollm2_reference_constants_match_shared_fixture_file() {
    let Some(dir) = common::shared_fixtures() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("smollm2-reference.json")).expect("read fixture");
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    let prompt = &json["chat_prompt"];
    assert_eq!(prompt["rendered"], SMOLLM2_RENDERED);
    assert_eq!(prompt["messages"][0]["content"], SMOLLM2_SYSTEM);
    assert_eq!(prompt["messages"][1]["content"], SMOLLM2_USER);
}

#[test]
fn raise_exception_in_template_is_an_error_not_a_panic() {
    let template = ChatTemplate::from_jinja(
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('x') }}{% endif %}{{ m.content }}{% endfor %}",
        "",
        "",
        "inline",
    )
    .expect("template parses");
    assert_eq!(
        template
            .render(&[Message::user("ok")], true)
            .expect("renders"),
        "ok"
    );
    match template.render(&[Message::system("s")], true) {
        Err(Error::Template { context, message }) => {
            assert_eq!(context, "inline");
            assert!(message.contains('x'), "{message}");
        }
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[test]
fn template_syntax_error_names_its_source() {
    let err = ChatTemplate::from_jinja("{% if %}", "", "", "GGUF tokenizer.chat_template")
        .expect_err("bad syntax");
    let text = err.to_string();
    assert!(text.contains("GGUF tokenizer.chat_template"), "{text}");
}

#[test]
fn llama31_style_strftime_now_renders() {
    // The date preamble of the Llama 3.1 Instruct template.
    let source = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- messages[0]['content'] | trim }}{{ "<|eot_id|>" }}"#;
    let template = ChatTemplate::from_jinja(source, "<|begin_of_text|>", "<|eot_id|>", "inline")
        .expect("template parses");
    let out = template
        .render(&[Message::system("Be brief.")], true)
        .expect("renders");
    let prefix = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ";
    let rest = out.strip_prefix(prefix).expect("preamble");
    let (date, tail) = rest.split_once("\n\n").expect("date line");
    assert_eq!(tail, "Be brief.<|eot_id|>");
    // "%d %b %Y": two-digit day, English month abbreviation, four-digit year.
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 3, "{date}");
    assert!(
        parts[0].len() == 2 && parts[0].chars().all(|c| c.is_ascii_digit()),
        "{date}"
    );
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&parts[1]),
        "{date}"
    );
    assert!(parts[2].len() == 4 && parts[2].starts_with("20"), "{date}");
}

// ------------------------------------------------------------------ prompts

fn column(name: &str, quoted: &str, ty: &str, samples: &[&str]) -> Column {
    Column {
        name: name.into(),
        quoted: quoted.into(),
        decl_type: ty.into(),
        not_null: false,
        primary_key: false,
        samples: samples.iter().map(|s| s.to_string()).collect(),
    }
}

/// A table shaped like the Spotify demo: names that need quoting.
fn songs_schema() -> Schema {
    Schema {
        tables: vec![Table {
            name: "songs".into(),
            quoted: "songs".into(),
            is_view: false,
            columns: vec![
                column("title", "title", "TEXT", &["'Hello'", "'Someone Like You'"]),
                column(
                    "top genre",
                    "\"top genre\"",
                    "TEXT",
                    &["'pop'", "'dance pop'"],
                ),
                column(
                    "beats.per.minute",
                    "\"beats.per.minute\"",
                    "INTEGER",
                    &["120", "97"],
                ),
                column("year", "year", "INTEGER", &[]),
            ],
            primary_key: vec![],
            foreign_keys: vec![],
            row_count: 3,
        }],
    }
}

fn default_prompt_dir() -> std::path::PathBuf {
    common::root().join("prompts").join("default")
}

fn copy_prompt(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for file in [
        "system.txt",
        "schema.j2",
        "examples.jsonl",
        "user.j2",
        "retry.j2",
    ] {
        std::fs::copy(from.join(file), to.join(file)).expect("copy prompt file");
    }
}

#[test]
fn default_prompt_shows_quoted_column_names_and_samples() {
    let spec = PromptSpec::builtin_default().expect("built-in prompt");
    let messages = spec
        .messages(&songs_schema(), "  What is the most common top genre?  ")
        .expect("messages");
    let system = &messages[0];
    assert_eq!(system.role, "system");
    assert!(system.content.contains("SQLite"), "{}", system.content);
    assert!(
        system.content.contains(
            "CREATE TABLE songs (\n  title TEXT, -- e.g. 'Hello', 'Someone Like You'\n  \"top genre\" TEXT, -- e.g. 'pop', 'dance pop'\n  \"beats.per.minute\" INTEGER, -- e.g. 120, 97\n  year INTEGER\n);"
        ),
        "{}",
        system.content
    );
    assert!(!system.content.contains("{{"), "{}", system.content);
    let last = messages.last().expect("a user turn");
    assert_eq!(last, &Message::user("What is the most common top genre?"));
}

#[test]
fn few_shots_become_alternating_user_assistant_turns() {
    let dir = common::temp_dir();
    let prompt = dir.path().join("shots");
    copy_prompt(&default_prompt_dir(), &prompt);
    std::fs::write(
        prompt.join("examples.jsonl"),
        "{\"question\": \"How many rows?\", \"sql\": \"SELECT COUNT(*) FROM t\"}\n\n{\"question\": \"Max x?\", \"sql\": \"SELECT MAX(x) FROM t;\", \"note\": \"extra fields are fine\"}\n",
    )
    .expect("write");
    std::fs::write(prompt.join("user.j2"), "Question: {{ question }}\n").expect("write");
    let spec = PromptSpec::from_dir(&prompt).expect("loads");
    let messages = spec
        .messages(&songs_schema(), "Newest song?")
        .expect("messages");
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    assert_eq!(messages[1].content, "Question: How many rows?");
    assert_eq!(messages[2].content, "SELECT COUNT(*) FROM t;");
    assert_eq!(messages[4].content, "SELECT MAX(x) FROM t;");
    assert_eq!(messages[5].content, "Question: Newest song?");
    // The assistant turns are written exactly as assistant_reply writes answers.
    assert_eq!(
        messages[2].content,
        spec.assistant_reply("SELECT COUNT(*) FROM t")
    );
}

#[test]
fn default_prompt_few_shots_are_valid_turns() {
    let spec = PromptSpec::builtin_default().expect("built-in prompt");
    assert!((2..=3).contains(&spec.examples().len()));
    let messages = spec.messages(&songs_schema(), "q").expect("messages");
    assert_eq!(messages.len(), 2 + 2 * spec.examples().len());
    for (pair, example) in messages[1..messages.len() - 1]
        .chunks(2)
        .zip(spec.examples())
    {
        assert_eq!(pair[0].role, "user");
        assert_eq!(pair[1].role, "assistant");
        assert!(pair[1].content.starts_with("SELECT ") && pair[1].content.ends_with(';'));
        assert_eq!(pair[1].content, spec.assistant_reply(&example.sql));
    }
}

#[test]
fn empty_question_is_invalid() {
    let spec = PromptSpec::builtin_default().expect("built-in prompt");
    for question in ["", "  \n\t "] {
        match spec.messages(&songs_schema(), question) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "question"),
            other => panic!("expected Invalid(question), got {other:?}"),
        }
    }
}

#[test]
fn missing_prompt_file_error_names_the_file() {
    let dir = common::temp_dir();
    let prompt = dir.path().join("broken");
    copy_prompt(&default_prompt_dir(), &prompt);
    std::fs::remove_file(prompt.join("schema.j2")).expect("remove");
    match PromptSpec::load(&prompt.to_string_lossy()) {
        Err(Error::Prompt { path, message }) => {
            assert_eq!(path, prompt.join("schema.j2"));
            assert!(message.contains("schema.j2"), "{message}");
        }
        other => panic!("expected a prompt error, got {other:?}"),
    }
}

#[test]
fn prompt_template_errors_name_the_file() {
    let dir = common::temp_dir();
    let prompt = dir.path().join("typo");
    copy_prompt(&default_prompt_dir(), &prompt);

    std::fs::write(prompt.join("user.j2"), "{% if %}").expect("write");
    let err = PromptSpec::from_dir(&prompt).expect_err("syntax error");
    assert!(err.to_string().contains("user.j2"), "{err}");

    // An unknown placeholder is caught when rendering, not printed as "".
    std::fs::write(prompt.join("user.j2"), "{{ questoin }}").expect("write");
    let spec = PromptSpec::from_dir(&prompt).expect("parses");
    let err = spec.messages(&songs_schema(), "q").expect_err("undefined");
    assert!(err.to_string().contains("user.j2"), "{err}");

    std::fs::write(prompt.join("user.j2"), "{{ question }}").expect("write");
    std::fs::write(prompt.join("examples.jsonl"), "{\"question\": 1}\n").expect("write");
    let err = PromptSpec::from_dir(&prompt).expect_err("bad few-shot");
    assert!(err.to_string().contains("examples.jsonl"), "{err}");
}

#[test]
fn prompt_loads_by_path_and_by_name() {
    let by_path = PromptSpec::load(&default_prompt_dir().to_string_lossy()).expect("by path");
    assert_eq!(by_path.name(), "default");
    assert_eq!(by_path.dir(), Some(default_prompt_dir().as_path()));

    let dir = common::temp_dir();
    let prompt = dir.path().join("v2");
    copy_prompt(&default_prompt_dir(), &prompt);
    let spec = PromptSpec::load(&prompt.to_string_lossy()).expect("by path");
    assert_eq!(spec.name(), "v2");

    // Tests run in the crate root, so the name resolves to ./prompts/default.
    let by_name = PromptSpec::load("default").expect("by name");
    assert_eq!(by_name.content_hash(), by_path.content_hash());
}

#[test]
fn unknown_prompt_name_lists_what_exists() {
    match PromptSpec::load("no-such-prompt") {
        Err(Error::Prompt { message, .. }) => {
            assert!(message.contains("no-such-prompt"), "{message}");
            assert!(message.contains("default"), "{message}");
        }
        other => panic!("expected a prompt error, got {other:?}"),
    }
}

#[test]
fn builtin_default_is_prompts_default() {
    let builtin = PromptSpec::builtin_default().expect("built-in prompt");
    let on_disk = PromptSpec::from_dir(&default_prompt_dir()).expect("prompts/default");
    assert_eq!(builtin.name(), "default");
    assert_eq!(builtin.dir(), None);
    assert_eq!(builtin.content_hash(), on_disk.content_hash());
    let schema = songs_schema();
    assert_eq!(
        builtin.messages(&schema, "q").expect("messages"),
        on_disk.messages(&schema, "q").expect("messages")
    );
}

#[test]
fn builtin_tuned_is_prompts_tuned() {
    let on_disk = PromptSpec::from_dir(&common::root().join("prompts/tuned")).expect("tuned");
    let builtin = PromptSpec::builtin("tuned").expect("built in");
    assert_eq!(builtin.name(), "tuned");
    assert_eq!(builtin.dir(), None);
    assert_eq!(builtin.content_hash(), on_disk.content_hash());
}

#[test]
fn retrieved_pairs_come_after_the_prompts_own_examples_the_closest_last() {
    use sqlagent::chat::{Example, ExampleIndex};
    let pairs = vec![
        Example {
            question: "How many songs are there?".into(),
            sql: "SELECT COUNT(*) FROM songs".into(),
        },
        Example {
            question: "What is the average danceability per genre?".into(),
            sql: "SELECT \"top genre\", AVG(danceability) FROM songs GROUP BY \"top genre\"".into(),
        },
        Example {
            question: "Which song has the most streams?".into(),
            sql: "SELECT title FROM songs ORDER BY streams DESC LIMIT 1".into(),
        },
    ];
    let index = std::sync::Arc::new(ExampleIndex::new(pairs));
    let plain = PromptSpec::builtin_default().expect("built-in prompt");
    let with = plain.clone().with_retrieval(index.clone(), 2);
    assert_eq!(with.retrieval(), Some((2, 3)));
    assert_eq!(with.content_hash(), plain.content_hash());
    let schema = songs_schema();
    let question = "What is the average danceability of songs in each genre?";
    let before = plain.messages(&schema, question).unwrap();
    let after = with.messages(&schema, question).unwrap();
    // Two more turns of two messages, just before the question.
    assert_eq!(after.len(), before.len() + 4);
    assert_eq!(after[..before.len() - 1], before[..before.len() - 1]);
    let n = after.len();
    assert_eq!(after[n - 2].role, "assistant");
    assert!(
        after[n - 2].content.contains("AVG(danceability)"),
        "{:?}",
        after[n - 2]
    );
    assert!(after[n - 3]
        .content
        .contains("average danceability per genre"));
    assert_eq!(after[n - 1], before[before.len() - 1]);
    // k = 0 is no retrieval.
    assert_eq!(plain.with_retrieval(index, 0).retrieval(), None);
}

#[test]
fn content_hash_changes_when_a_file_changes() {
    let dir = common::temp_dir();
    let prompt = dir.path().join("p");
    copy_prompt(&default_prompt_dir(), &prompt);
    let before = PromptSpec::from_dir(&prompt).expect("loads").content_hash();
    assert_eq!(before.len(), 64);
    assert!(before.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        PromptSpec::from_dir(&prompt).expect("loads").content_hash(),
        before,
        "stable across loads"
    );

    for file in [
        "system.txt",
        "schema.j2",
        "examples.jsonl",
        "user.j2",
        "retry.j2",
    ] {
        let path = prompt.join(file);
        let original = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, format!("{original}\n")).expect("write");
        let after = PromptSpec::from_dir(&prompt).expect("loads").content_hash();
        assert_ne!(after, before, "{file} changed but the hash did not");
        std::fs::write(&path, original).expect("restore");
    }
    assert_eq!(
        PromptSpec::from_dir(&prompt).expect("loads").content_hash(),
        before
    );
}

#[test]
fn default_prompt_through_chat_templates() {
    let spec = PromptSpec::builtin_default().expect("built-in prompt");
    let messages = spec
        .messages(&songs_schema(), "Which genre is the most popular?")
        .expect("messages");
    let text = ChatTemplate::llama3()
        .render(&messages, true)
        .expect("renders");
    assert!(text.contains("\"top genre\" TEXT"));
    assert!(text.ends_with(
        "Which genre is the most popular?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ));
    if let Some(content) = smollm2_gguf_content() {
        let chatml = ChatTemplate::from_gguf(&content, Path::new("model.gguf"))
            .expect("parses")
            .expect("has template");
        let text = chatml.render(&messages, true).expect("renders");
        assert!(text.starts_with("<|im_start|>system\nYou write one SQLite SELECT query"));
        assert!(text.ends_with("<|im_end|>\n<|im_start|>assistant\n"));
    }
}
