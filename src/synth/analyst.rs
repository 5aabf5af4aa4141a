//! Template questions in the words analysts use rather than the schema's:
//! superlatives ("the most popular song", "which artist is least
//! popular"), lookups of one row by its name ("Who sings X?", "What year
//! was X released?"), distinct counts, filters on a value of a category
//! ("How many songs does X have?"), on a year and on a number, each
//! asking for the row's name only unless the question names more. The
//! English of common columns comes from [`super::lexicon`].

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::lexicon::{degrees_of, is_year, plural, short_name, who_verbs, Degrees};
use super::roles::{role, Role};
use super::templates::{fill, is_numeric, name_column, pick, shown, singular, table_noun, words};
use super::Candidate;
use crate::sql::{Column, Table};

/// How a question may call a column: its words, or its short name.
fn called(c: &Column, rng: &mut StdRng) -> String {
    let w = words(&c.name);
    match short_name(&w) {
        Some(short) if rand::Rng::random_bool(rng, 0.7) => short,
        _ => w,
    }
}

/// The superlatives of a year column: the newest has the highest year.
const YEAR_DEGREES: Degrees = Degrees {
    adjective: "recent",
    highest: "newest",
    lowest: "oldest",
    higher: "newer than",
    lower: "older than",
    of_groups: false,
};

/// Values drawn per round for the filters on one category's values: a
/// category has few skeletons, so it needs more values for its share.
const VALUES_PER_FILTER: usize = 3;

/// What a table's questions need: its words, its quoted name and the
/// column that names a row.
struct Subject<'a> {
    /// The table.
    table: &'a Table,
    /// `songs`.
    many: String,
    /// `song`.
    one: String,
    /// The table as SQL spells it.
    quoted: &'a str,
    /// The name column as SQL spells it.
    name: &'a str,
    /// The name column as a question says it (`title`).
    name_words: String,
}

impl Subject<'_> {
    fn push(&self, out: &mut Vec<Candidate>, template: &'static str, q: &str, sql: String) {
        let question = fill(q, &[("t", &self.many), ("one", &self.one)]);
        out.push(Candidate {
            question,
            sql,
            template,
        });
    }
}

/// Every analyst-phrased candidate for table `t` (one draw of phrasings
/// and values).
pub fn questions(t: &Table, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let Some(name) = name_column(t) else {
        return;
    };
    let many = table_noun(&t.name);
    let s = Subject {
        table: t,
        one: singular(&many),
        many,
        quoted: &t.quoted,
        name: &name.quoted,
        name_words: words(&name.name),
    };
    let others: Vec<&Column> = t
        .columns
        .iter()
        .filter(|c| role(t, c) != Role::Key && c.name != name.name)
        .collect();
    name_contains(&s, name, rng, out);
    for c in &others {
        // Yes/no columns have templates of their own ("how many … are …").
        if role(t, c) == Role::Flag {
            continue;
        }
        lookups(&s, name, c, rng, out);
        if !c.not_null {
            missing(&s, c, rng, out);
        }
        // Keys, contact details, dates, names and free text are looked up
        // only: never computed with, grouped or counted by.
        match role(t, c) {
            Role::Key | Role::Contact | Role::Date | Role::Name | Role::Text | Role::Flag => {
                continue
            }
            Role::Year | Role::Money | Role::Measure | Role::Category => {}
        }
        if is_numeric(c) {
            let cw = words(&c.name);
            let degrees = if is_year(&cw) {
                Some(YEAR_DEGREES)
            } else {
                degrees_of(&cw)
            };
            if let Some(d) = degrees {
                superlatives(&s, c, d, rng, out);
            }
            if !is_year(&cw) {
                above_average(&s, c, degrees, rng, out);
                two_aggregates(&s, c, rng, out);
            }
            if is_year(&cw) {
                distinct_count(&s, c, rng, out);
                group_filters(&s, c, &others, rng, out);
                for _ in 0..VALUES_PER_FILTER {
                    year_filters(&s, c, rng, out);
                }
            } else {
                number_filters(&s, c, degrees, &others, rng, out);
            }
        } else {
            distinct_count(&s, c, rng, out);
            group_filters(&s, c, &others, rng, out);
            for _ in 0..VALUES_PER_FILTER {
                value_filters(&s, c, &others, rng, out);
            }
            for m in others.iter().filter(|m| role(t, m).is_measure()) {
                if let Some(d) = degrees_of(&words(&m.name)).filter(|d| d.of_groups) {
                    group_superlatives(&s, c, m, d, rng, out);
                }
            }
        }
    }
}

/// "What is the most popular song?", "List the 3 longest songs."
fn superlatives(s: &Subject, c: &Column, d: Degrees, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let (n, t, cq) = (s.name, s.quoted, &c.quoted);
    for (dir, sup) in [("DESC", d.highest), ("ASC", d.lowest)] {
        let q = pick(
            rng,
            &[
                "What is the {sup} {one}?",
                "Which {one} is the {sup}?",
                "Name the {sup} {one}.",
                "What is the {sup} {one} in the data?",
            ],
        );
        s.push(
            out,
            "superlative",
            &fill(q, &[("sup", sup)]),
            format!("SELECT {n} FROM {t} ORDER BY {cq} {dir} LIMIT 1"),
        );
        let k = [2usize, 3, 5, 10].choose(rng).copied().unwrap_or(3);
        let q = pick(
            rng,
            &[
                "List the {k} {sup} {t}.",
                "What are the {k} {sup} {t}?",
                "Show the top {k} {sup} {t}.",
            ],
        );
        s.push(
            out,
            "superlative_k",
            &fill(q, &[("sup", sup), ("k", &k.to_string())]),
            format!("SELECT {n} FROM {t} ORDER BY {cq} {dir} LIMIT {k}"),
        );
        let q = pick(
            rng,
            &[
                "What is the {sup} {one}, and what is its {c}?",
                "Which {one} is the {sup}? Give it with its {c}.",
            ],
        );
        s.push(
            out,
            "superlative_value",
            &fill(q, &[("sup", sup), ("c", &called(c, rng))]),
            format!("SELECT {n}, {cq} FROM {t} ORDER BY {cq} {dir} LIMIT 1"),
        );
    }
    for (dir, most) in [("DESC", "most"), ("ASC", "least")] {
        let q = pick(
            rng,
            &[
                "Which {one} has the {most} {c}?",
                "What {one} has the {most} {c}?",
            ],
        );
        s.push(
            out,
            "superlative",
            &fill(q, &[("most", most), ("c", &called(c, rng))]),
            format!("SELECT {n} FROM {t} ORDER BY {cq} {dir} LIMIT 1"),
        );
    }
}

/// "Which artist is least popular?" (on average over its rows), with and
/// without that average.
fn group_superlatives(
    s: &Subject,
    g: &Column,
    m: &Column,
    d: Degrees,
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let (t, gq, mq) = (s.quoted, &g.quoted, &m.quoted);
    for (dir, sup) in [("DESC", d.highest), ("ASC", d.lowest)] {
        let gw = called(g, rng);
        let q = pick(
            rng,
            &[
                "Which {g} is {sup}?",
                "Which {g} is the {sup}?",
                "Which {g} is {sup} on average?",
                "What is the {sup} {g}?",
            ],
        );
        s.push(
            out,
            "group_superlative",
            &fill(q, &[("g", &gw), ("sup", sup)]),
            format!("SELECT {gq} FROM {t} GROUP BY {gq} ORDER BY AVG({mq}) {dir} LIMIT 1"),
        );
        let q = pick(
            rng,
            &[
                "Which {g} is {sup}, and what is their average {m}?",
                "Which {g} is the {sup} and what is its average {m}?",
                "What is the {sup} {g} and its average {m}?",
            ],
        );
        s.push(
            out,
            "group_superlative_value",
            &fill(q, &[("g", &gw), ("sup", sup), ("m", &called(m, rng))]),
            format!(
                "SELECT {gq}, AVG({mq}) FROM {t} GROUP BY {gq} ORDER BY AVG({mq}) {dir} LIMIT 1"
            ),
        );
    }
}

/// One row's value by its name: "Who sings X?", "What year was X
/// released?", "How popular is X?", "What genre is X?".
fn lookups(s: &Subject, name: &Column, c: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let Some(v) = name.samples.choose(rng).cloned() else {
        return;
    };
    let cw = words(&c.name);
    let shown_v = shown(&v);
    let mut phrasings: Vec<String> = [
        "What is the {c} of {v}?",
        "What {c} does {v} have?",
        "Give the {c} of the {one} {v}.",
    ]
    .iter()
    .map(|q| q.to_string())
    .collect();
    for verb in who_verbs(&cw) {
        phrasings.push(format!("Who {verb} {{v}}?"));
        phrasings.push("Who is the {c} of {v}?".into());
    }
    if is_numeric(c) && is_year(&cw) {
        phrasings.extend(
            [
                "What year was {v} released?",
                "When did {v} come out?",
                "In which year was {v} released?",
            ]
            .map(String::from),
        );
    } else if let Some(d) = is_numeric(c).then(|| degrees_of(&cw)).flatten() {
        phrasings.push(format!("How {} is {{v}}?", d.adjective));
    } else if !is_numeric(c) && who_verbs(&cw).is_empty() {
        phrasings.push("What {c} is {v}?".into());
    }
    let q = phrasings.choose(rng).cloned().unwrap_or_default();
    s.push(
        out,
        "lookup",
        &fill(&q, &[("c", &called(c, rng)), ("v", &shown_v)]),
        format!(
            "SELECT {} FROM {} WHERE {} = {v}",
            c.quoted, s.quoted, s.name
        ),
    );
}

/// "What are the average and the highest energy of the songs?"
fn two_aggregates(s: &Subject, c: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let (first, second) = *[
        (("AVG", "average"), ("MAX", "highest")),
        (("MIN", "lowest"), ("MAX", "highest")),
        (("AVG", "average"), ("MIN", "lowest")),
    ]
    .choose(rng)
    .unwrap_or(&(("AVG", "average"), ("MAX", "highest")));
    let q = pick(
        rng,
        &[
            "What are the {a} and the {b} {c} of the {t}?",
            "Give the {a} and {b} {c}.",
        ],
    );
    s.push(
        out,
        "two_aggregates",
        &fill(
            q,
            &[("a", first.1), ("b", second.1), ("c", &called(c, rng))],
        ),
        format!(
            "SELECT {}({cq}), {}({cq}) FROM {}",
            first.0,
            second.0,
            s.quoted,
            cq = c.quoted
        ),
    );
}

/// "Which songs have Love in their title?": a word of one row's name.
fn name_contains(s: &Subject, name: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let words_of_names: Vec<String> = name
        .samples
        .iter()
        .flat_map(|v| {
            shown(v)
                .split(|ch: char| !ch.is_alphanumeric())
                .filter(|w| w.chars().count() >= 4 && w.chars().all(char::is_alphabetic))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let Some(word) = words_of_names.choose(rng) else {
        return;
    };
    let q = pick(
        rng,
        &[
            "Which {t} have {w} in their {n}?",
            "List the {t} whose {n} contains {w}.",
        ],
    );
    s.push(
        out,
        "name_contains",
        &fill(q, &[("w", word), ("n", &s.name_words)]),
        format!(
            "SELECT {} FROM {} WHERE {} LIKE '%{}%'",
            s.name, s.quoted, s.name, word
        ),
    );
}

/// "How many different artists are there?"
fn distinct_count(s: &Subject, c: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let q = pick(
        rng,
        &[
            "How many different {cs} are there?",
            "How many distinct {cs} are in the data?",
            "How many unique {cs} do the {t} have?",
            "Count the different {cs}.",
        ],
    );
    s.push(
        out,
        "distinct_count",
        &fill(q, &[("cs", &plural(&called(c, rng)))]),
        format!("SELECT COUNT(DISTINCT {}) FROM {}", c.quoted, s.quoted),
    );
}

/// The rows with one value of a text column: "Which songs are by X?",
/// "How many songs are in the pop genre?", "What is the average energy of
/// the songs by X?".
fn value_filters(
    s: &Subject,
    c: &Column,
    others: &[&Column],
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let Some(v) = c.samples.choose(rng).cloned() else {
        return;
    };
    let (t, n, cq) = (s.quoted, s.name, &c.quoted);
    let person = !who_verbs(&words(&c.name)).is_empty();
    let cw = called(c, rng);
    let fills = [("v", shown(&v)), ("c", cw)];
    let fills: Vec<(&str, &str)> = fills.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (list, count, within): (&[&str], &[&str], &str) = if person {
        (
            &[
                "Which {t} are by {v}?",
                "List the {t} by {v}.",
                "What {t} does {v} have?",
            ],
            &["How many {t} does {v} have?", "How many {t} are by {v}?"],
            "by {v}",
        )
    } else {
        (
            &[
                "Which {t} are in the {v} {c}?",
                "List the {v} {t}.",
                "List the {t} whose {c} is {v}.",
            ],
            &[
                "How many {t} are in the {v} {c}?",
                "How many {v} {t} are there?",
            ],
            "in the {v} {c}",
        )
    };
    s.push(
        out,
        "value_list",
        &fill(pick(rng, list), &fills),
        format!("SELECT {n} FROM {t} WHERE {cq} = {v}"),
    );
    s.push(
        out,
        "value_count",
        &fill(pick(rng, count), &fills),
        format!("SELECT COUNT(*) FROM {t} WHERE {cq} = {v}"),
    );
    // "How many artists have songs in the dance pop genre?"
    let shared: Vec<&&Column> = others
        .iter()
        .filter(|o| o.name != c.name && !is_numeric(o) && role(s.table, o) == Role::Category)
        .collect();
    if let Some(o) = shared.choose(rng) {
        let q = pick(
            rng,
            &[
                "How many different {os} have {t} {within}?",
                "How many {os} have {t} {within}?",
            ],
        );
        let q = q.replace("{within}", within);
        s.push(
            out,
            "value_distinct_count",
            &fill(&fill(&q, &fills), &[("os", &plural(&called(o, rng)))]),
            format!(
                "SELECT COUNT(DISTINCT {}) FROM {t} WHERE {cq} = {v}",
                o.quoted
            ),
        );
    }
    let numeric: Vec<&&Column> = others
        .iter()
        .filter(|m| role(s.table, m).is_measure())
        .collect();
    if let Some(m) = numeric.choose(rng) {
        let (func, word) = *[("AVG", "average"), ("MAX", "highest"), ("MIN", "lowest")]
            .choose(rng)
            .unwrap_or(&("AVG", "average"));
        let q = pick(
            rng,
            &[
                "What is the {w} {m} of the {t} {within}?",
                "What is the {w} {m} among the {t} {within}?",
            ],
        );
        let q = q.replace("{within}", within);
        s.push(
            out,
            "value_aggregate",
            &fill(&fill(&q, &fills), &[("w", word), ("m", &called(m, rng))]),
            format!("SELECT {func}({}) FROM {t} WHERE {cq} = {v}", m.quoted),
        );
    }
}

/// "Which songs were released in 2020?", "How many songs came out before
/// 2015?"
fn year_filters(s: &Subject, y: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let Some(v) = y.samples.choose(rng).cloned() else {
        return;
    };
    let (t, n, yq) = (s.quoted, s.name, &y.quoted);
    let q = pick(
        rng,
        &[
            "Which {t} were released in {v}?",
            "List the {t} from {v}.",
            "What {t} came out in {v}?",
        ],
    );
    s.push(
        out,
        "year_list",
        &fill(q, &[("v", &v)]),
        format!("SELECT {n} FROM {t} WHERE {yq} = {v}"),
    );
    let q = pick(
        rng,
        &[
            "How many {t} were released in {v}?",
            "How many {t} are from {v}?",
        ],
    );
    s.push(
        out,
        "year_count",
        &fill(q, &[("v", &v)]),
        format!("SELECT COUNT(*) FROM {t} WHERE {yq} = {v}"),
    );
    for (op, word) in [("<", "before"), (">", "after")] {
        let q = pick(
            rng,
            &[
                "How many {t} were released {w} {v}?",
                "How many {t} came out {w} {v}?",
            ],
        );
        s.push(
            out,
            "year_range_count",
            &fill(q, &[("v", &v), ("w", word)]),
            format!("SELECT COUNT(*) FROM {t} WHERE {yq} {op} {v}"),
        );
        let q = pick(
            rng,
            &[
                "Which {t} came out {w} {v}?",
                "List the {t} released {w} {v}.",
            ],
        );
        s.push(
            out,
            "year_range_list",
            &fill(q, &[("v", &v), ("w", word)]),
            format!("SELECT {n} FROM {t} WHERE {yq} {op} {v}"),
        );
    }
}

/// "Which songs have a popularity above 85?", "How many songs are longer
/// than 250?", "List the title and artist of the songs with energy above
/// 80."
fn number_filters(
    s: &Subject,
    c: &Column,
    degrees: Option<Degrees>,
    others: &[&Column],
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let Some(v) = c.samples.choose(rng).cloned() else {
        return;
    };
    let (t, n, cq) = (s.quoted, s.name, &c.quoted);
    let cw = called(c, rng);
    for (op, word) in [(">", "above"), ("<", "below")] {
        let q = pick(
            rng,
            &[
                "Which {t} have a {c} {w} {v}?",
                "List the {t} with a {c} {w} {v}.",
                "Which {t} have {c} {w} {v}?",
            ],
        );
        s.push(
            out,
            "number_list",
            &fill(q, &[("c", &cw), ("w", word), ("v", &v)]),
            format!("SELECT {n} FROM {t} WHERE {cq} {op} {v}"),
        );
        let q = pick(
            rng,
            &[
                "How many {t} have a {c} {w} {v}?",
                "How many {t} have {c} {w} {v}?",
            ],
        );
        s.push(
            out,
            "number_count",
            &fill(q, &[("c", &cw), ("w", word), ("v", &v)]),
            format!("SELECT COUNT(*) FROM {t} WHERE {cq} {op} {v}"),
        );
    }
    if let Some(d) = degrees {
        for (op, than) in [(">", d.higher), ("<", d.lower)] {
            let q = pick(
                rng,
                &["Which {t} are {than} {v}?", "List the {t} {than} {v}."],
            );
            s.push(
                out,
                "comparative_list",
                &fill(q, &[("than", than), ("v", &v)]),
                format!("SELECT {n} FROM {t} WHERE {cq} {op} {v}"),
            );
            s.push(
                out,
                "comparative_count",
                &fill("How many {t} are {than} {v}?", &[("than", than), ("v", &v)]),
                format!("SELECT COUNT(*) FROM {t} WHERE {cq} {op} {v}"),
            );
        }
    }
    let text: Vec<&&Column> = others.iter().filter(|o| !is_numeric(o)).collect();
    if let Some(g) = text.choose(rng) {
        let q = pick(
            rng,
            &[
                "List the {n} and {g} of the {t} with {c} above {v}.",
                "Give the {n} and {g} of every {one} with a {c} above {v}.",
            ],
        );
        s.push(
            out,
            "number_list_two",
            &fill(
                q,
                &[
                    ("n", &s.name_words),
                    ("g", &called(g, rng)),
                    ("c", &cw),
                    ("v", &v),
                ],
            ),
            format!("SELECT {n}, {} FROM {t} WHERE {cq} > {v}", g.quoted),
        );
    }
}

/// "Which albums have no label?": the rows where a column is NULL (kept
/// only where there are such rows).
fn missing(s: &Subject, c: &Column, rng: &mut StdRng, out: &mut Vec<Candidate>) {
    let q = pick(
        rng,
        &[
            "Which {t} have no {c}?",
            "Which {t} have no known {c}?",
            "List the {t} without a {c}.",
        ],
    );
    s.push(
        out,
        "missing",
        &fill(q, &[("c", &called(c, rng))]),
        format!(
            "SELECT {} FROM {} WHERE {} IS NULL",
            s.name, s.quoted, c.quoted
        ),
    );
}

/// "Which songs are more popular than the average song?"
fn above_average(
    s: &Subject,
    c: &Column,
    degrees: Option<Degrees>,
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let (t, n, cq) = (s.quoted, s.name, &c.quoted);
    for (op, word, than) in [
        (">", "above", degrees.map(|d| d.higher)),
        ("<", "below", degrees.map(|d| d.lower)),
    ] {
        let plain = fill(
            pick(
                rng,
                &[
                    "Which {t} have a {c} {w} the average?",
                    "List the {t} whose {c} is {w} average.",
                ],
            ),
            &[("c", &called(c, rng)), ("w", word)],
        );
        let q = match than {
            Some(than) if rand::Rng::random_bool(rng, 0.5) => {
                fill("Which {t} are {than} the average {one}?", &[("than", than)])
            }
            _ => plain,
        };
        s.push(
            out,
            "above_average",
            &q,
            format!("SELECT {n} FROM {t} WHERE {cq} {op} (SELECT AVG({cq}) FROM {t})"),
        );
    }
}

/// Per-category totals and the categories with many rows: "What is the
/// total streams for each country?", "Which countries have more than 2
/// artists?"
fn group_filters(
    s: &Subject,
    c: &Column,
    others: &[&Column],
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let (t, cq) = (s.quoted, &c.quoted);
    let cw = called(c, rng);
    let k = [2usize, 3, 5].choose(rng).copied().unwrap_or(2);
    let (op, word) = *[(">", "more than"), (">=", "at least")]
        .choose(rng)
        .unwrap_or(&(">", "more than"));
    let q = pick(
        rng,
        &[
            "Which {cs} have {w} {k} {t}?",
            "List the {cs} with {w} {k} {t}.",
        ],
    );
    s.push(
        out,
        "group_having",
        &fill(
            q,
            &[("cs", &plural(&cw)), ("w", word), ("k", &k.to_string())],
        ),
        format!("SELECT {cq} FROM {t} GROUP BY {cq} HAVING COUNT(*) {op} {k}"),
    );
    let numeric: Vec<&&Column> = others
        .iter()
        .filter(|m| m.name != c.name && role(s.table, m).is_measure())
        .collect();
    if let Some(m) = numeric.choose(rng) {
        let q = pick(
            rng,
            &[
                "What is the total {m} for each {c}?",
                "For each {c}, what is the total {m}?",
                "How much {m} is there in total per {c}?",
            ],
        );
        s.push(
            out,
            "group_sum",
            &fill(q, &[("m", &called(m, rng)), ("c", &cw)]),
            format!("SELECT {cq}, SUM({}) FROM {t} GROUP BY {cq}", m.quoted),
        );
    }
}
