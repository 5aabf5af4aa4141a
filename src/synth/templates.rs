//! Question/SQL pairs from a schema and its data, by templates: counts,
//! aggregates, filters on real values, group-by, top-k, most common value,
//! and joins over foreign keys, each question in several phrasings.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::sql::{Column, Schema, Table};

/// One generated pair and the template it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The question.
    pub question: String,
    /// The SQL.
    pub sql: String,
    /// The template's name (`count`, `top_k`, …).
    pub template: &'static str,
}

/// Values per column that [`with_values`] gives the templates to draw from.
pub const VALUES_PER_COLUMN: usize = 50;

/// `schema` with each column's samples widened to up to
/// [`VALUES_PER_COLUMN`] of its distinct values in `db`, so that
/// questions name many rows, not only the few the prompt shows. Views and
/// tables whose values cannot be read keep their samples.
pub fn with_values(db: &crate::sql::Database, schema: &Schema) -> Schema {
    let mut wide = schema.clone();
    for t in &mut wide.tables {
        for c in &mut t.columns {
            if let Ok(values) = db.distinct_values(&t.quoted, &c.quoted, VALUES_PER_COLUMN) {
                if values.len() > c.samples.len() {
                    c.samples = values;
                }
            }
        }
    }
    wide
}

/// `candidates` shuffled within each template, then dealt one template at
/// a time in turn, so that the first pairs kept cover every kind of
/// question evenly instead of in proportion to how many candidates each
/// template happens to give.
pub fn interleave(candidates: Vec<Candidate>, rng: &mut StdRng) -> Vec<Candidate> {
    use rand::seq::SliceRandom;
    let mut by_template: std::collections::BTreeMap<&'static str, Vec<Candidate>> =
        Default::default();
    for c in candidates {
        by_template.entry(c.template).or_default().push(c);
    }
    let mut queues: Vec<std::vec::IntoIter<Candidate>> = by_template
        .into_values()
        .map(|mut v| {
            v.shuffle(rng);
            v.into_iter()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(queues.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

/// Rounds over the templates: each draws phrasings and values anew.
pub const ROUNDS: usize = 4;

/// Every candidate the templates give for `schema` over [`ROUNDS`] rounds;
/// the phrasing of each question, the sample values and the `k` of top-k
/// questions are drawn from `rng` (equal seeds, equal candidates).
pub fn candidates(schema: &Schema, rng: &mut StdRng) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for _ in 0..ROUNDS {
        for t in schema
            .tables
            .iter()
            .filter(|t| !t.is_view && t.row_count > 0)
        {
            single_table(t, rng, &mut out);
            super::analyst::questions(t, rng, &mut out);
        }
        for child in &schema.tables {
            for fk in &child.foreign_keys {
                super::joined::questions(schema, child, fk, rng, &mut out);
            }
        }
    }
    for c in &mut out {
        c.question = articles(&without_doubled_words(&c.question));
    }
    out
}

/// The year a date literal starts with (`'2021-01-03 00:00:00'` → `2021`).
fn year_of(literal: &str) -> Option<String> {
    let year: String = shown(literal).chars().take(4).collect();
    (year.len() == 4 && year.chars().all(|c| c.is_ascii_digit())).then_some(year)
}

/// The month (1-12) of a date text that starts `YYYY-MM`.
fn month_of(date: &str) -> Option<usize> {
    let bytes = date.as_bytes();
    if bytes.len() < 7 || bytes[4] != b'-' {
        return None;
    }
    let month: usize = date.get(5..7)?.parse().ok()?;
    (1..=12).contains(&month).then_some(month)
}

/// Year questions over date column `c` of `t`: rows per year, rows in one
/// year, and the total of a measure (money first) in one year; month
/// questions of that year when its dates are written `YYYY-MM…`.
fn date_questions(
    t: &Table,
    c: &Column,
    tw: &str,
    measures: &[&Column],
    rng: &mut StdRng,
    push: &mut dyn FnMut(&'static str, String, String),
) {
    let (tq, cq, cw) = (&t.quoted, &c.quoted, words(&c.name));
    let by_year = format!("strftime('%Y', {cq})");
    // "invoices in 2021" only for the table's own date (`InvoiceDate`);
    // another date is named ("employees with a birth date in 1973").
    let own = cw.starts_with(&singular(tw)) || cw == "date";
    let q = if own {
        pick(
            rng,
            &[
                "How many {t} are there per year?",
                "How many {t} were there each year?",
            ],
        )
    } else {
        pick(
            rng,
            &[
                "How many {t} are there per year of {c}?",
                "Count the {t} by year of {c}.",
            ],
        )
    };
    push(
        "date_per_year",
        fill(q, &[("t", tw), ("c", &cw)]),
        format!("SELECT {by_year}, COUNT(*) FROM {tq} GROUP BY {by_year}"),
    );
    let Some(year) = c.samples.choose(rng).and_then(|v| year_of(v)) else {
        return;
    };
    let q = if own {
        pick(
            rng,
            &["How many {t} were there in {y}?", "Count the {t} of {y}."],
        )
    } else {
        pick(
            rng,
            &[
                "How many {t} have a {c} in {y}?",
                "Count the {t} whose {c} is in {y}.",
            ],
        )
    };
    push(
        "date_in_year",
        fill(q, &[("t", tw), ("c", &cw), ("y", &year)]),
        format!("SELECT COUNT(*) FROM {tq} WHERE {by_year} = '{year}'"),
    );
    // Months: per month of that year, and one month.
    let sample = c
        .samples
        .iter()
        .map(|v| shown(v))
        .find(|v| month_of(v).is_some() && v.starts_with(&year));
    if let Some(month) = sample.as_deref().and_then(month_of) {
        let by_month = format!("strftime('%m', {cq})");
        let q = if own {
            pick(
                rng,
                &[
                    "How many {t} were there per month in {y}?",
                    "Count the {t} of each month of {y}.",
                ],
            )
        } else {
            pick(rng, &["How many {t} have a {c} in each month of {y}?"])
        };
        push(
            "date_per_month",
            fill(q, &[("t", tw), ("c", &cw), ("y", &year)]),
            format!(
                "SELECT {by_month}, COUNT(*) FROM {tq} WHERE {by_year} = '{year}' GROUP BY {by_month}"
            ),
        );
        let name = crate::chat::template::MONTHS[month - 1];
        let q = if own {
            pick(
                rng,
                &[
                    "How many {t} were there in {m} {y}?",
                    "Count the {t} of {m} {y}.",
                ],
            )
        } else {
            pick(rng, &["How many {t} have a {c} in {m} {y}?"])
        };
        push(
            "date_in_month",
            fill(q, &[("t", tw), ("c", &cw), ("m", name), ("y", &year)]),
            format!(
                "SELECT COUNT(*) FROM {tq} WHERE strftime('%Y-%m', {cq}) = '{year}-{month:02}'"
            ),
        );
    }
    let money = measures
        .iter()
        .find(|m| super::roles::role(t, m) == super::roles::Role::Money)
        .or_else(|| measures.first());
    if let Some(m) = money.filter(|_| own) {
        let q = pick(
            rng,
            &[
                "What is the total {m} of the {t} in {y}?",
                "What was the total {m} in {y}?",
            ],
        );
        push(
            "date_year_total",
            fill(q, &[("t", tw), ("m", &words(&m.name)), ("y", &year)]),
            format!(
                "SELECT SUM({}) FROM {tq} WHERE {by_year} = '{year}'",
                m.quoted
            ),
        );
    }
}

/// A word written twice in a row once: "the total total" (a column called
/// `Total` summed) → "the total".
fn without_doubled_words(question: &str) -> String {
    let bare = |w: &str| {
        w.trim_matches(|c: char| c.is_ascii_punctuation())
            .to_lowercase()
    };
    let mut words: Vec<&str> = Vec::new();
    for w in question.split(' ') {
        // `total total?` keeps the second, with its punctuation.
        if words
            .last()
            .is_some_and(|last| !bare(w).is_empty() && bare(last) == bare(w))
        {
            words.pop();
        }
        words.push(w);
    }
    words.join(" ")
}

/// "a" before a vowel made "an": `a energy` → `an energy`.
fn articles(question: &str) -> String {
    let mut out = String::with_capacity(question.len() + 4);
    let mut words = question.split(' ').peekable();
    while let Some(w) = words.next() {
        let next_vowel = words
            .peek()
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeioAEIO".contains(c));
        out.push_str(if w == "a" && next_vowel { "an" } else { w });
        if words.peek().is_some() {
            out.push(' ');
        }
    }
    out
}

/// How a name reads in a question (see [`crate::sql::name_words`]).
pub(super) use crate::sql::name_words as words;

/// A table's rows as a plural noun: `InvoiceLine` → `invoice lines`,
/// `artists` stays `artists`, `Media_Type` → `media types`.
pub(super) fn table_noun(name: &str) -> String {
    let w = words(name);
    if singular(&w) != w {
        return w;
    }
    match w.rsplit_once(' ') {
        Some((head, last)) => format!("{head} {}", super::lexicon::plural(last)),
        None => super::lexicon::plural(&w),
    }
}

/// A plural table name made singular for "each artist", "the album with":
/// `artists` → `artist`, `categories` → `category`; other words stay.
pub(super) fn singular(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if plural.ends_with("sses") || plural.ends_with("ches") || plural.ends_with("shes") {
        plural[..plural.len() - 2].to_string()
    } else if plural.ends_with('s') && !plural.ends_with("ss") && !plural.ends_with("us") {
        plural[..plural.len() - 1].to_string()
    } else {
        plural.to_string()
    }
}

pub(super) fn is_numeric(c: &Column) -> bool {
    let t = c.decl_type.to_ascii_uppercase();
    ["INT", "REAL", "FLOA", "DOUB", "NUM", "DEC"]
        .iter()
        .any(|k| t.contains(k))
}

/// The column that names a row: one called like a name or title, else the
/// first text column that is no key.
pub(super) fn name_column(t: &Table) -> Option<&Column> {
    let text = |c: &&Column| !is_numeric(c) && super::roles::role(t, c) != super::roles::Role::Key;
    t.columns
        .iter()
        .filter(text)
        .find(|c| {
            let n = c.name.to_ascii_lowercase();
            n.contains("name") || n.contains("title")
        })
        .or_else(|| t.columns.iter().find(text))
}

pub(super) fn pick<'a>(rng: &mut StdRng, phrasings: &[&'a str]) -> &'a str {
    phrasings.choose(rng).copied().unwrap_or_default()
}

pub(super) fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in pairs {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// A sample literal as a question shows it: `'Sweden'` → `Sweden`.
pub(super) fn shown(literal: &str) -> String {
    literal
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .map(|s| s.replace("''", "'"))
        .unwrap_or_else(|| literal.to_string())
}

fn single_table(t: &Table, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let tw = table_noun(&t.name);
    let tq = &t.quoted;
    let mut push = |template: &'static str, question: String, sql: String| {
        out.push(Candidate {
            question,
            sql,
            template,
        })
    };
    let q = pick(
        rng,
        &[
            "How many {t} are there?",
            "Count the {t}.",
            "What is the total number of {t}?",
            "How many {t} are in the data?",
            "How many {t} does the table have?",
        ],
    );
    push(
        "count",
        fill(q, &[("t", &tw)]),
        format!("SELECT COUNT(*) FROM {tq}"),
    );

    let name = name_column(t);
    let role = |c: &Column| super::roles::role(t, c);
    // Only measures are computed with; only categories are counted by.
    let numeric: Vec<&Column> = t.columns.iter().filter(|c| role(c).is_measure()).collect();
    let text: Vec<&Column> = t
        .columns
        .iter()
        .filter(|c| role(c) == super::roles::Role::Category)
        .collect();

    // Yes/no columns: how many rows are (not) so, and which.
    for c in t
        .columns
        .iter()
        .filter(|c| role(c) == super::roles::Role::Flag)
    {
        let Some((yes, no)) = super::roles::flag_values(c) else {
            continue;
        };
        let is = super::roles::flag_predicate(c);
        let cq = &c.quoted;
        let q = pick(rng, &["How many {t} {is}?", "Count the {t} that {is}."]);
        push(
            "flag_count",
            fill(q, &[("t", &tw), ("is", &is)]),
            format!("SELECT COUNT(*) FROM {tq} WHERE {cq} = {yes}"),
        );
        if let Some(no) = no {
            let isnt = is
                .replacen("are ", "are not ", 1)
                .replacen("have ", "do not have ", 1);
            push(
                "flag_count",
                fill("How many {t} {isnt}?", &[("t", &tw), ("isnt", &isnt)]),
                format!("SELECT COUNT(*) FROM {tq} WHERE {cq} = {no}"),
            );
        }
        if let Some(n) = name {
            let q = pick(
                rng,
                &["Which {t} {is}?", "List the {n} of the {t} that {is}."],
            );
            push(
                "flag_list",
                fill(q, &[("t", &tw), ("is", &is), ("n", &words(&n.name))]),
                format!("SELECT {} FROM {tq} WHERE {cq} = {yes}", n.quoted),
            );
        }
    }

    for c in &numeric {
        let cw = words(&c.name);
        let cq = &c.quoted;
        for (func, word) in [
            ("AVG", "average"),
            ("MAX", "highest"),
            ("MIN", "lowest"),
            ("SUM", "total"),
        ] {
            let q = pick(
                rng,
                &[
                    "What is the {w} {c} of the {t}?",
                    "Find the {w} {c} across all {t}.",
                    "Give the {w} {c} over the {t}.",
                    "What is the {w} {c}?",
                    "What is the {w} {c} of any {one}?",
                ],
            );
            push(
                "aggregate",
                fill(
                    q,
                    &[("w", word), ("c", &cw), ("t", &tw), ("one", &singular(&tw))],
                ),
                format!("SELECT {func}({cq}) FROM {tq}"),
            );
        }
        if let (Some(n), Some(v)) = (name, c.samples.choose(rng).cloned()) {
            let v = &v;
            let (nw, nq) = (words(&n.name), &n.quoted);
            for (op, word) in [(">", "above"), ("<", "below")] {
                let q = pick(
                    rng,
                    &[
                        "Which {t} have a {c} {w} {v}? Give their {n}.",
                        "List the {n} of the {t} with {c} {w} {v}.",
                    ],
                );
                push(
                    "numeric_filter",
                    fill(
                        q,
                        &[
                            ("t", &tw),
                            ("c", &cw),
                            ("w", word),
                            ("v", &shown(v)),
                            ("n", &nw),
                        ],
                    ),
                    format!("SELECT {nq} FROM {tq} WHERE {cq} {op} {v}"),
                );
            }
            for (dir, word) in [("DESC", "highest"), ("ASC", "lowest")] {
                let k = *[1usize, 3, 5].choose(rng).unwrap_or(&3);
                let q = if k == 1 {
                    pick(
                        rng,
                        &[
                            "Which {one} has the {w} {c}? Give its {n}.",
                            "What is the {n} of the {one} with the {w} {c}?",
                        ],
                    )
                } else {
                    pick(
                        rng,
                        &[
                            "What are the {k} {t} with the {w} {c}? Give their {n} and {c}.",
                            "List the {n} and {c} of the {k} {t} with the {w} {c}.",
                        ],
                    )
                };
                push(
                    "top_k",
                    fill(
                        q,
                        &[
                            ("t", &tw),
                            ("one", &singular(&tw)),
                            ("c", &cw),
                            ("w", word),
                            ("n", &nw),
                            ("k", &k.to_string()),
                        ],
                    ),
                    if k == 1 {
                        format!("SELECT {nq} FROM {tq} ORDER BY {cq} {dir} LIMIT 1")
                    } else {
                        format!("SELECT {nq}, {cq} FROM {tq} ORDER BY {cq} {dir} LIMIT {k}")
                    },
                );
            }
        }
    }

    // Dates are asked by year.
    for c in t
        .columns
        .iter()
        .filter(|c| role(c) == super::roles::Role::Date)
    {
        date_questions(t, c, &tw, &numeric, rng, &mut push);
    }

    // Categories to count, filter and group by: text categories, and years.
    let years: Vec<&Column> = t
        .columns
        .iter()
        .filter(|c| role(c) == super::roles::Role::Year)
        .collect();
    for c in text.iter().chain(years.iter()) {
        let cw = words(&c.name);
        let cq = &c.quoted;
        for v in c
            .samples
            .choose(rng)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
        {
            let v = &v;
            let q = pick(
                rng,
                &[
                    "How many {t} have {c} {v}?",
                    "Count the {t} whose {c} is {v}.",
                ],
            );
            push(
                "text_filter_count",
                fill(q, &[("t", &tw), ("c", &cw), ("v", &shown(v))]),
                format!("SELECT COUNT(*) FROM {tq} WHERE {cq} = {v}"),
            );
            if let Some(n) = name.filter(|n| n.name != c.name) {
                let q = pick(
                    rng,
                    &[
                        "List the {n} of the {t} whose {c} is {v}.",
                        "Which {t} have {c} {v}? Give their {n}.",
                    ],
                );
                push(
                    "text_filter",
                    fill(
                        q,
                        &[
                            ("t", &tw),
                            ("c", &cw),
                            ("v", &shown(v)),
                            ("n", &words(&n.name)),
                        ],
                    ),
                    format!("SELECT {} FROM {tq} WHERE {cq} = {v}", n.quoted),
                );
            }
        }
        if name.is_some_and(|n| n.name == c.name) {
            continue;
        }
        let q = pick(
            rng,
            &[
                "How many {t} are there for each {c}?",
                "Count the {t} per {c}.",
            ],
        );
        push(
            "group_count",
            fill(q, &[("t", &tw), ("c", &cw)]),
            format!("SELECT {cq}, COUNT(*) FROM {tq} GROUP BY {cq}"),
        );
        let q = pick(
            rng,
            &[
                "Which {c} has the most {t}?",
                "What is the most common {c} among the {t}?",
                "Which {c} appears most often?",
                "What is the most frequent {c}?",
                "Which {c} occurs most often among the {t}?",
            ],
        );
        push(
            "most_common",
            fill(q, &[("t", &tw), ("c", &cw)]),
            format!("SELECT {cq} FROM {tq} GROUP BY {cq} ORDER BY COUNT(*) DESC LIMIT 1"),
        );
        let q = pick(
            rng,
            &[
                "Which {c} has the most {t}, and how many?",
                "What is the most common {c} among the {t}, with its count?",
                "Which {c} appears most often, and how many times?",
                "What is the most frequent {c} and how many {t} have it?",
            ],
        );
        push(
            "most_common_count",
            fill(q, &[("t", &tw), ("c", &cw)]),
            format!("SELECT {cq}, COUNT(*) FROM {tq} GROUP BY {cq} ORDER BY COUNT(*) DESC LIMIT 1"),
        );
        for m in numeric.iter().filter(|m| m.name != c.name) {
            let mw = words(&m.name);
            for (dir, word) in [("DESC", "highest"), ("ASC", "lowest")] {
                let with_value = rng.random_bool(0.5);
                let q = if with_value {
                    pick(
                        rng,
                        &[
                            "Which {c} has the {w} average {m}, and what is it?",
                            "Give the {c} with the {w} average {m} and that average.",
                        ],
                    )
                } else {
                    pick(
                        rng,
                        &[
                            "Which {c} has the {w} average {m}?",
                            "What is the {c} whose {t} have the {w} average {m}?",
                        ],
                    )
                };
                let cols = if with_value {
                    format!("{cq}, AVG({})", m.quoted)
                } else {
                    cq.to_string()
                };
                push(
                    "group_top",
                    fill(q, &[("t", &tw), ("c", &cw), ("m", &mw), ("w", word)]),
                    format!(
                        "SELECT {cols} FROM {tq} GROUP BY {cq} ORDER BY AVG({}) {dir} LIMIT 1",
                        m.quoted
                    ),
                );
            }
            let q = pick(
                rng,
                &[
                    "What is the average {m} for each {c}?",
                    "For each {c}, give the average {m} of the {t}.",
                ],
            );
            push(
                "group_average",
                fill(q, &[("t", &tw), ("c", &cw), ("m", &words(&m.name))]),
                format!("SELECT {cq}, AVG({}) FROM {tq} GROUP BY {cq}", m.quoted),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_before_vowels() {
        assert_eq!(
            articles("Which songs have a energy above a 5? A apple, a unit."),
            "Which songs have an energy above a 5? A apple, a unit."
        );
    }

    #[test]
    fn tables_read_as_plural_nouns() {
        for (name, noun) in [
            ("InvoiceLine", "invoice lines"),
            ("Customer", "customers"),
            ("artists", "artists"),
            ("Media_Type", "media types"),
            ("Category", "categories"),
        ] {
            assert_eq!(table_noun(name), noun, "{name}");
        }
        assert_eq!(
            without_doubled_words("For each state, what is the total total?"),
            "For each state, what is the total?"
        );
    }

    fn column(name: &str, decl_type: &str, samples: &[&str]) -> Column {
        let samples = samples.iter().map(|s| s.to_string()).collect();
        Column {
            primary_key: name == "InvoiceId",
            ..Column::for_test(name, decl_type, samples)
        }
    }

    #[test]
    fn a_real_schema_s_keys_contacts_and_dates_get_the_right_questions() {
        let many: Vec<String> = (0..50).map(|i| format!("'{i:05}'")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let invoice = Table {
            name: "Invoice".into(),
            quoted: "Invoice".into(),
            is_view: false,
            columns: vec![
                column("InvoiceId", "INTEGER", &["1", "2"]),
                column("CustomerId", "INTEGER", &["1", "2"]),
                column("InvoiceDate", "DATETIME", &["'2021-01-01 00:00:00'"]),
                column("BillingPostalCode", "NVARCHAR(10)", &many),
                column("BillingCountry", "NVARCHAR(40)", &["'USA'", "'Canada'"]),
                column("Total", "NUMERIC(10,2)", &["1.98", "3.96"]),
            ],
            primary_key: vec!["InvoiceId".into()],
            foreign_keys: vec![crate::sql::ForeignKey {
                columns: vec!["CustomerId".into()],
                table: "Customer".into(),
                to_columns: vec!["CustomerId".into()],
            }],
            row_count: 412,
        };
        let schema = Schema {
            tables: vec![invoice],
        };
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let all = candidates(&schema, &mut rng);
        for c in &all {
            for computed in ["AVG(", "SUM(", "MAX(", "MIN("] {
                for key in ["InvoiceId", "CustomerId", "BillingPostalCode"] {
                    assert!(!c.sql.contains(&format!("{computed}{key}")), "{c:?}");
                }
            }
            assert!(!c.sql.contains("GROUP BY BillingPostalCode"), "{c:?}");
            assert!(!c.question.contains("invoiceid"), "{c:?}");
        }
        let template = |name: &str| all.iter().filter(|c| c.template == name).count();
        assert!(template("date_per_year") > 0 && template("date_in_year") > 0);
        assert!(template("date_per_month") > 0 && template("date_in_month") > 0);
        assert!(template("two_aggregates") > 0, "{all:?}");
        assert!(all.iter().any(|c| c.sql
            == "SELECT SUM(Total) FROM Invoice WHERE strftime('%Y', InvoiceDate) = '2021'"));
        assert!(all
            .iter()
            .any(|c| c.sql.contains("GROUP BY BillingCountry")));
        assert!(all.iter().any(|c| c.question.contains("invoices")));
    }

    #[test]
    fn singulars() {
        for (p, s) in [
            ("artists", "artist"),
            ("categories", "category"),
            ("classes", "class"),
            ("matches", "match"),
            ("status", "status"),
            ("songs", "song"),
            ("music", "music"),
        ] {
            assert_eq!(singular(p), s);
        }
    }
}
