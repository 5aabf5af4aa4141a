//! The page at `/` of `sqlagent serve`, in a real browser: headless
//! Chromium (Debian's `chromium`, or `SQLAGENT_CHROMIUM`) driven through
//! the DevTools protocol. The key is asked once and kept in session
//! storage; a question asked with Enter shows the SQL and the rows that
//! SQLite returns for that SQL; sorting, CSV and the history work; an
//! empty question and a full queue show their messages; the page fits a
//! phone's width; and nothing is fetched from anywhere but the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::browser::tab::ModifierKey;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Network, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{json, Value};

use crate::common;
use crate::server::{demo_db, hold_a_worker, model_args, strs, Server, KEY};

/// Chromium: `SQLAGENT_CHROMIUM`, else `chromium` (or `chromium-browser`,
/// `google-chrome`) on the PATH. Absent: a skip, or a failure under CI.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SQLAGENT_CHROMIUM") {
        return common::present_or_skip(PathBuf::from(path), "Chromium (SQLAGENT_CHROMIUM)");
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
        })
    });
    common::present_or_skip(
        found.unwrap_or_else(|| PathBuf::from("/usr/bin/chromium")),
        "Chromium (apt install chromium, or set SQLAGENT_CHROMIUM)",
    )
}

/// The value of a JavaScript expression, passed through JSON.
fn js(tab: &Tab, expression: &str) -> Value {
    let wrapped = format!("JSON.stringify(({expression}))");
    let result = tab
        .evaluate(&wrapped, true)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    match result.value {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Waits until `condition` (JavaScript) holds.
fn wait_until(tab: &Tab, condition: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if js(tab, &format!("Boolean({condition})")) == Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the page says:\n{}",
            js(tab, "document.body.innerText")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn type_question(tab: &Tab, question: &str) {
    js(tab, "document.getElementById('question').value = ''");
    tab.find_element("#question").unwrap().click().unwrap();
    tab.type_str(question).unwrap();
}

/// Asks with Enter and waits until the page is done answering.
fn ask(tab: &Tab, question: &str) {
    let asked = js(tab, "state.asked").as_u64().unwrap();
    type_question(tab, question);
    tab.press_key("Enter").unwrap();
    wait_until(
        tab,
        &format!("state.asked > {asked} && !state.busy"),
        "the answer",
    );
}

/// The rows the page shows, as text, in the order shown.
fn shown_rows(tab: &Tab) -> Vec<Vec<String>> {
    serde_json::from_value(js(
        tab,
        "[...document.querySelectorAll('#rows tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))",
    ))
    .unwrap()
}

/// `sql` run by SQLite on `db`: the column names and each cell as the page
/// writes it (JavaScript's number formatting, NULL for null).
fn sqlite_rows(db: &Path, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let rows = stmt
        .query_map([], |row| {
            Ok((0..n)
                .map(|i| match row.get_ref(i).unwrap() {
                    ValueRef::Null => "NULL".to_string(),
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                        format!("{}", v as i64)
                    }
                    ValueRef::Real(v) => v.to_string(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Blob(b) => format!("{b:?}"),
                })
                .collect())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (columns, rows)
}

fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::root().join("target"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}

#[test]
fn the_page_asks_in_a_real_browser_and_shows_the_rows_sqlite_returns() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let Some(chromium) = chromium() else {
        return;
    };
    let tmp = common::temp_dir();
    let music = demo_db(tmp.path());
    let cities = crate::server::cities_db(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        format!("music={}", music.display()),
        "--db".into(),
        format!("cities={}", cities.display()),
        "--parallel".into(),
        "1".into(),
        "--queue".into(),
        "0".into(),
        "--max-request-tokens".into(),
        "4000".into(),
        // Fewer rows than the question asks for: the cut is shown.
        "--max-rows".into(),
        "3".into(),
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
        "--adapter".into(),
        format!(
            "music-demo={}",
            common::root().join("adapters/music-demo").display()
        ),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);

    let browser = Browser::new(LaunchOptions {
        headless: true,
        sandbox: false,
        path: Some(chromium),
        window_size: Some((1280, 900)),
        idle_browser_timeout: Duration::from_secs(600),
        ..LaunchOptions::default()
    })
    .expect("start Chromium");
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    // Every request the page makes, from the first.
    let requested = Arc::new(Mutex::new(Vec::<String>::new()));
    tab.call_method(Network::Enable {
        max_total_buffer_size: None,
        max_resource_buffer_size: None,
        max_post_data_size: None,
        report_direct_socket_traffic: None,
        enable_durable_messages: None,
    })
    .unwrap();
    {
        let requested = Arc::clone(&requested);
        tab.add_event_listener(Arc::new(move |event: &Event| {
            if let Event::NetworkRequestWillBeSent(e) = event {
                requested.lock().unwrap().push(e.params.request.url.clone());
            }
        }))
        .unwrap();
    }
    tab.navigate_to(&server.url("/")).unwrap();
    tab.wait_until_navigated().unwrap();

    // The key, asked once, kept in this tab's session storage only.
    wait_until(
        &tab,
        "document.getElementById('key-dialog').open",
        "the key dialog",
    );
    tab.find_element("#key").unwrap().click().unwrap();
    tab.type_str(KEY).unwrap();
    tab.press_key("Enter").unwrap();
    wait_until(
        &tab,
        "document.getElementById('db').options.length === 2",
        "the databases",
    );
    assert_eq!(
        js(&tab, "sessionStorage.getItem('sqlagent-api-key')"),
        json!(KEY)
    );
    assert_eq!(js(&tab, "localStorage.length"), json!(0));

    // Pick the music database (its tables are listed) and the adapter.
    js(
        &tab,
        "(() => { const s = document.getElementById('db'); s.value = 'music'; s.dispatchEvent(new Event('change')); })()",
    );
    assert_eq!(
        js(
            &tab,
            "[...document.getElementById('adapter').options].map(o => o.value)"
        ),
        json!(["", "music-demo"])
    );
    js(
        &tab,
        "document.getElementById('adapter').value = 'music-demo'",
    );
    let tables = js(&tab, "document.getElementById('tables').innerText");
    assert!(
        tables.as_str().is_some_and(|t| t.contains("artists")),
        "{tables}"
    );

    // Shift+Enter is a new line, not a question.
    type_question(&tab, "How many");
    tab.press_key_with_modifiers("Enter", Some(&[ModifierKey::Shift]))
        .unwrap();
    assert_eq!(
        js(&tab, "document.getElementById('question').value"),
        json!("How many\n")
    );
    assert_eq!(js(&tab, "state.history.length"), json!(0));

    // A question: the SQL shown, run by SQLite, gives the rows shown.
    ask(&tab, "Which 5 tracks have the highest popularity?");
    let sql = js(&tab, "document.getElementById('sql').textContent");
    let sql = sql
        .as_str()
        .unwrap()
        .trim()
        .trim_end_matches(';')
        .to_string();
    assert!(sql.to_uppercase().starts_with("SELECT"), "{sql}");
    let (columns, all_rows) = sqlite_rows(&music, &sql);
    assert!(all_rows.len() > 3, "{sql} returns {} rows", all_rows.len());
    let rows = all_rows[..3].to_vec();
    assert_eq!(
        js(
            &tab,
            "[...document.querySelectorAll('#rows thead th')].map(th => th.textContent)"
        ),
        json!(columns)
    );
    assert_eq!(shown_rows(&tab), rows, "{sql}");
    let count = js(&tab, "document.getElementById('row-count').textContent");
    assert_eq!(
        count,
        json!("first 3 rows: truncated at the server's row cap of 3")
    );
    assert_eq!(
        js(
            &tab,
            "document.getElementById('row-count').classList.contains('truncated')"
        ),
        json!(true)
    );
    let timings = js(&tab, "document.getElementById('timings').textContent");
    for part in [
        "prefill",
        "decode",
        "execution",
        "grammar repairs",
        "adapter music-demo",
    ] {
        assert!(
            timings.as_str().unwrap().contains(part),
            "{part}: {timings}"
        );
    }
    assert_eq!(
        js(&tab, "document.querySelectorAll('#sql .kw').length > 0"),
        json!(true),
        "the SQL is highlighted"
    );
    screenshot(&tab, "page.png");

    // Sorted by the first column: ascending, then descending (the same
    // rows, in reverse); the CSV follows the order shown.
    let th = "document.querySelector('#rows thead th').getAttribute('aria-sort')";
    tab.find_element("#rows thead th").unwrap().click().unwrap();
    assert_eq!(js(&tab, th), json!("ascending"));
    let ascending = shown_rows(&tab);
    let mut same = ascending.clone();
    same.sort();
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(same, expected, "sorting keeps the rows");
    tab.find_element("#rows thead th").unwrap().click().unwrap();
    assert_eq!(js(&tab, th), json!("descending"));
    let descending = shown_rows(&tab);
    let firsts = |rows: &[Vec<String>]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    let mut reversed = firsts(&ascending);
    reversed.reverse();
    assert_eq!(firsts(&descending), reversed);
    let csv = js(&tab, "csvText()");
    let header = columns.join(",");
    assert!(
        csv.as_str().unwrap().starts_with(&format!("{header}\r\n")),
        "{csv}"
    );
    assert_eq!(
        csv.as_str().unwrap().lines().count(),
        rows.len() + 1,
        "{csv}"
    );

    // The history re-runs a question.
    assert_eq!(
        js(&tab, "document.querySelectorAll('#history li').length"),
        json!(1)
    );
    let entry = js(&tab, "document.querySelector('#history li').textContent");
    assert!(
        entry.as_str().unwrap().contains("(music, music-demo)"),
        "{entry}"
    );
    tab.find_element("#history button")
        .unwrap()
        .click()
        .unwrap();
    wait_until(
        &tab,
        "state.history.length === 2 && !state.busy",
        "the re-run",
    );
    let again = js(&tab, "document.getElementById('sql').textContent");
    assert_eq!(again.as_str().unwrap().trim().trim_end_matches(';'), sql);
    assert_eq!(shown_rows(&tab), rows);

    // An empty question: the server's message.
    ask(&tab, "   ");
    let message = js(&tab, "document.getElementById('message').hidden ? '' : document.getElementById('message').textContent");
    assert!(message.as_str().unwrap().contains("empty"), "{message}");

    // The only worker busy and no queue: the page says so.
    let long = hold_a_worker(&server);
    ask(&tab, "How many tracks are there?");
    let message = js(&tab, "document.getElementById('message').textContent");
    assert!(
        message.as_str().unwrap().contains("The server is busy"),
        "{message}"
    );
    drop(long);

    // At a phone's width nothing runs off the side.
    tab.call_method(
        headless_chrome::protocol::cdp::Emulation::SetDeviceMetricsOverride {
            width: 390,
            height: 844,
            device_scale_factor: 2.0,
            mobile: true,
            scale: None,
            screen_width: None,
            screen_height: None,
            position_x: None,
            position_y: None,
            dont_set_visible_size: None,
            screen_orientation: None,
            viewport: None,
            display_feature: None,
            device_posture: None,
        },
    )
    .unwrap();
    wait_until(
        &tab,
        "document.documentElement.scrollWidth <= window.innerWidth",
        "the page to fit 390 px",
    );
    screenshot(&tab, "page-phone.png");

    // Nothing but the server (and the page's own data:/blob: URLs).
    let requested = requested.lock().unwrap().clone();
    assert!(requested.len() >= 5, "{requested:?}");
    for url in &requested {
        assert!(
            url.starts_with(&format!("{}/", server.url))
                || url.starts_with("data:")
                || url.starts_with("blob:"),
            "the page fetched {url}"
        );
    }
}
