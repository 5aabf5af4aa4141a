// The page of `sqlagent serve`: pick a database, ask a question, watch the
// SQL stream in, read the rows. It talks only to the server that served
// it (/health, /v1/models, /v1/databases, /v1/sql) and loads nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "sqlagent-api-key";
const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  databases: [],
  history: [],
  asked: 0,
  result: null,
  sort: null,
  busy: false,
};

function requestHeaders(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

// fetch with the key; a 401 asks for the key and tries again.
async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, {
      ...options,
      headers: requestHeaders(options.body !== undefined),
    });
    if (response.status !== 401) return response;
    await askForKey(state.key ? "That key was not accepted." : "");
  }
}

function askForKey(note) {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    const input = $("key");
    input.value = "";
    dialog.querySelector("p").textContent =
      (note ? note + " " : "") + "This server needs an API key.";
    dialog.addEventListener(
      "close",
      () => {
        state.key = input.value.trim();
        sessionStorage.setItem(KEY_STORE, state.key);
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

// What an error answer means to the person who asked.
function describeError(status, body, retryAfter) {
  const error = (body && body.error) || {};
  const message = error.message || "the server gave no reason";
  const retry = retryAfter ? ` Try again in ${retryAfter} s.` : "";
  if (status === 429) return `The server is busy: every worker is answering and the queue is full.${retry || " Try again shortly."}`;
  if (status === 503) return `The server is not ready (the model is loading or the server is stopping).${retry} (${message})`;
  if (error.code === "timeout" || status === 504) return `The question took longer than the server allows: ${message}`;
  if (error.code === "no_query") return `No query was written: ${message}`;
  if (error.code === "query_failed") return `The query failed: ${message}`;
  if (status === 0) return `The server cannot be reached: ${message}`;
  return message;
}

async function errorBody(response) {
  try {
    return await response.json();
  } catch (_) {
    return { error: { message: `${response.status} ${response.statusText}` } };
  }
}

async function load() {
  for (;;) {
    let health;
    try {
      const response = await fetch("/health");
      health = await response.json();
      if (response.ok) {
        $("model").textContent = "model " + health.model;
        break;
      }
    } catch (e) {
      health = { status: "unreachable" };
    }
    showMessage(`The server is ${health.status || "not ready"}; waiting…`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  showMessage("");
  const models = await (await api("/v1/models")).json();
  const adapters = models.data.filter((m) => m.parent);
  if (adapters.length > 0) {
    const select = $("adapter");
    select.append(new Option(`${models.data[0].id} (server default)`, ""));
    for (const a of adapters) select.append(new Option(`${a.id} (adapter)`, a.id));
    $("adapter-label").hidden = false;
  }
  const dbs = await (await api("/v1/databases")).json();
  state.databases = dbs.data;
  const select = $("db");
  for (const d of dbs.data) select.append(new Option(d.name, d.name));
  select.addEventListener("change", showTables);
  showTables();
}

function showTables() {
  const box = $("tables");
  box.replaceChildren();
  const db = state.databases.find((d) => d.name === $("db").value);
  if (!db) return;
  for (const [i, t] of db.tables.entries()) {
    const details = document.createElement("details");
    details.open = i === 0;
    const summary = document.createElement("summary");
    summary.textContent = `${t.name} `;
    const rows = document.createElement("span");
    rows.className = "muted";
    rows.textContent = `${t.rows} rows${t.view ? ", view" : ""}`;
    summary.append(rows);
    const list = document.createElement("ul");
    for (const c of t.columns) {
      const li = document.createElement("li");
      li.textContent = c.name + " ";
      const type = document.createElement("span");
      type.className = "type";
      type.textContent = (c.type || "") + (c.primary_key ? " key" : "");
      li.append(type);
      list.append(li);
    }
    details.append(summary, list);
    box.append(details);
  }
}

const KEYWORDS = new Set(
  ("select from where group by order having limit offset join left inner outer cross on as and or not " +
    "in is null like between distinct count sum avg min max case when then else end asc desc with union " +
    "all except intersect exists cast glob collate nocase natural using").split(" "),
);

// The SQL as highlighted spans (text only: never parsed as HTML).
function highlight(sql) {
  const code = document.createElement("code");
  const token = /('(?:[^']|'')*'?)|("(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)|(\s+|.)/g;
  let m;
  while ((m = token.exec(sql)) !== null) {
    let cls = null;
    if (m[1] !== undefined) cls = "str";
    else if (m[2] !== undefined) cls = "ident";
    else if (m[3] !== undefined) cls = "num";
    else if (m[4] !== undefined && KEYWORDS.has(m[4].toLowerCase())) cls = "kw";
    if (cls) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = m[0];
      code.append(span);
    } else {
      code.append(document.createTextNode(m[0]));
    }
  }
  return code;
}

function setSql(text, streaming) {
  const pre = $("sql");
  pre.classList.toggle("streaming", streaming);
  if (streaming) {
    pre.replaceChildren(document.createElement("code"));
    pre.firstChild.textContent = text;
  } else {
    pre.replaceChildren(highlight(text));
  }
}

const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);

function showResult(result) {
  state.result = result;
  state.sort = null;
  setSql(result.sql ? result.sql + ";" : "(no SQL)", false);
  const t = result.timings || {};
  const g = result.grammar || {};
  $("timings").textContent =
    `prefill ${ms(t.prefill_ms || 0)} (${t.prompt_tokens || 0} tokens, ${t.reused_prompt_tokens || 0} kept) · ` +
    `decode ${ms(t.decode_ms || 0)} (${t.generated_tokens || 0} tokens) · ` +
    `execution ${ms(t.execute_ms || 0)} · grammar repairs ${g.repairs || 0}` +
    (result.adapter ? ` · adapter ${result.adapter}` : "");
  renderRows();
}

function renderRows() {
  const r = state.result;
  const thead = $("rows").tHead;
  const tbody = $("rows").tBodies[0];
  thead.replaceChildren();
  tbody.replaceChildren();
  const count = $("row-count");
  if (!r || !r.columns) {
    count.textContent = "not run";
    count.classList.remove("truncated");
    $("csv").disabled = true;
    return;
  }
  $("csv").disabled = false;
  const head = document.createElement("tr");
  r.columns.forEach((name, i) => {
    const th = document.createElement("th");
    th.textContent = name;
    th.scope = "col";
    if (state.sort && state.sort.column === i) {
      th.setAttribute("aria-sort", state.sort.ascending ? "ascending" : "descending");
    }
    th.addEventListener("click", () => sortBy(i));
    head.append(th);
  });
  thead.append(head);
  for (const row of sortedRows()) {
    const tr = document.createElement("tr");
    for (const value of row) {
      const td = document.createElement("td");
      if (value === null) {
        td.textContent = "NULL";
        td.className = "null";
      } else {
        td.textContent = String(value);
        if (typeof value === "number") td.className = "n";
      }
      tr.append(td);
    }
    tbody.append(tr);
  }
  const n = r.rows.length;
  const cap = r.max_rows ? ` (at most ${r.max_rows} shown)` : "";
  count.textContent = r.truncated
    ? `first ${n} rows: truncated at the server's row cap of ${r.max_rows}`
    : `${n} row${n === 1 ? "" : "s"}${cap}`;
  count.classList.toggle("truncated", !!r.truncated);
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function sortedRows() {
  const rows = state.result.rows.slice();
  const s = state.sort;
  if (s) rows.sort((x, y) => compareValues(x[s.column], y[s.column]) * (s.ascending ? 1 : -1));
  return rows;
}

function sortBy(column) {
  const s = state.sort;
  state.sort = { column, ascending: !(s && s.column === column && s.ascending) };
  renderRows();
}

function csvCell(value) {
  if (value === null) return "";
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// The rows shown, in the order shown, as CSV (RFC 4180; NULL is empty).
function csvText() {
  const r = state.result;
  if (!r || !r.columns) return "";
  const lines = [r.columns.map(csvCell).join(",")];
  for (const row of sortedRows()) lines.push(row.map(csvCell).join(","));
  return lines.join("\r\n") + "\r\n";
}

function exportCsv() {
  const text = csvText();
  if (!text) return;
  const blob = new Blob([text], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "sqlagent-result.csv";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function copySql() {
  const text = state.result ? state.result.sql + ";" : "";
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy").textContent = "Copied";
  setTimeout(() => ($("copy").textContent = "Copy"), 1200);
}

// Reads the server-sent events of a streamed /v1/sql answer.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function ask(question, db, adapter) {
  if (state.busy) return;
  state.busy = true;
  $("ask").disabled = true;
  showMessage("");
  $("answer").hidden = false;
  state.result = null;
  setSql("", true);
  $("timings").textContent = "writing SQL…";
  renderRows();
  const body = { question, db, stream: true };
  if (adapter) body.adapter = adapter;
  let streamed = "";
  let finished = null;
  try {
    const response = await api("/v1/sql", { method: "POST", body: JSON.stringify(body) });
    if (!response.ok) {
      showFailure(response.status, await errorBody(response), response.headers.get("Retry-After"));
    } else {
      await readEvents(response, (name, data) => {
        if (name === "sql") {
          streamed += data.text;
          setSql(streamed, true);
        } else if (name === "result") {
          finished = data;
          showResult(data);
        } else if (name === "error") {
          finished = data;
          showFailure(data.status || 500, data);
        }
      });
      if (!finished) showFailure(0, { error: { message: "the answer stopped before it was complete" } });
    }
  } catch (e) {
    showFailure(0, { error: { message: String(e) } });
  } finally {
    state.busy = false;
    state.asked += 1;
    $("ask").disabled = false;
  }
  if (question) remember(question, db, adapter, finished);
}

function showFailure(status, body, retryAfter) {
  showMessage(describeError(status, body, retryAfter));
  if (body && body.sql) {
    setSql(body.sql + ";", false);
  } else {
    $("answer").hidden = !state.result;
  }
  $("timings").textContent = "";
}

function remember(question, db, adapter, result) {
  state.history.unshift({ question, db, adapter, ok: !!(result && result.columns) });
  const list = $("history");
  list.replaceChildren();
  for (const item of state.history) {
    const li = document.createElement("li");
    li.textContent = item.question + " ";
    const where = document.createElement("span");
    where.className = "muted";
    where.textContent = `(${item.db}${item.adapter ? ", " + item.adapter : ""}${item.ok ? "" : ", failed"})`;
    const again = document.createElement("button");
    again.type = "button";
    again.textContent = "Re-run";
    again.addEventListener("click", () => {
      $("question").value = item.question;
      $("db").value = item.db;
      if (item.adapter !== undefined) $("adapter").value = item.adapter || "";
      showTables();
      ask(item.question, item.db, item.adapter);
    });
    li.append(where, again);
    list.append(li);
  }
}

function submit(event) {
  if (event) event.preventDefault();
  ask($("question").value.trim(), $("db").value, $("adapter").value || null);
}

$("ask-form").addEventListener("submit", submit);
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) submit(e);
});
$("copy").addEventListener("click", copySql);
$("csv").addEventListener("click", exportCsv);
load().catch((e) => showMessage(`Loading the page's data failed: ${e}`));
