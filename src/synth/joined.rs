//! Template questions over a foreign key: counts per parent, the parent
//! with most children, one parent's children, their count and aggregates
//! ("How many tracks does the album X have?", "What is the average
//! popularity of the tracks of the album X?"), per-parent averages, the
//! parent with the highest average, children filtered by a category of
//! their parent, and the same over two keys in a row (tracks → albums →
//! artists).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::templates::{fill, name_column, pick, shown, singular, table_noun, words};
use super::Candidate;
use crate::sql::{quote_ident, Column, ForeignKey, Schema, Table};

/// Values of the parent drawn per round.
const VALUES_PER_KEY: usize = 2;

/// One foreign key, ready to write: `child JOIN parent ON …`.
struct Link<'a> {
    child: &'a Table,
    parent: &'a Table,
    /// `child.fk = parent.key`.
    on: String,
    /// The parent's key, qualified (what to group by).
    parent_key: String,
}

impl<'a> Link<'a> {
    fn new(schema: &'a Schema, child: &'a Table, fk: &ForeignKey) -> Option<Self> {
        let parent = schema
            .tables
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(&fk.table))?;
        let from = fk.columns.first()?;
        let to = fk
            .to_columns
            .first()
            .or(parent.primary_key.first())
            .cloned()
            .unwrap_or_else(|| "rowid".into());
        let (cq, pq) = (&child.quoted, &parent.quoted);
        Some(Self {
            child,
            parent,
            on: format!("{cq}.{} = {pq}.{}", quote_ident(from), quote_ident(&to)),
            parent_key: format!("{pq}.{}", quote_ident(&to)),
        })
    }
}

fn push(out: &mut Vec<Candidate>, template: &'static str, question: String, sql: String) {
    out.push(Candidate {
        question,
        sql,
        template,
    });
}

/// The measures of a table: numeric columns that are no key and no year.
fn measures(t: &Table) -> Vec<&Column> {
    t.columns
        .iter()
        .filter(|c| super::roles::role(t, c).is_measure())
        .collect()
}

/// How a question names the parent of a foreign key: by the key's own
/// words when they say more than the parent table's name (`SupportRepId`
/// → Employee: "support rep"), else by the table (`CustomerId` →
/// "customer"; `ReportsTo` → "employee", a verb is no noun).
fn parent_noun(key: &[String], table_noun: &str) -> String {
    let [column] = key else {
        return table_noun.to_string();
    };
    let w = words(column);
    let role = [" id", " key", " code"]
        .iter()
        .find_map(|suffix| w.strip_suffix(suffix))
        .unwrap_or(&w);
    let last = role.rsplit(' ').next().unwrap_or_default();
    let verb_like = matches!(
        last,
        "to" | "of" | "by" | "for" | "from" | "in" | "on" | "at" | "id"
    );
    if role.is_empty() || verb_like || role == table_noun {
        table_noun.to_string()
    } else {
        role.to_string()
    }
}

/// A column's words without the noun they repeat: `treatment type
/// description` of a treatment type reads "description" (after "the
/// treatment type"); `name` stays `name`.
fn without_noun(column_words: &str, noun: &str) -> String {
    column_words
        .strip_prefix(noun)
        .and_then(|rest| rest.strip_prefix(' '))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(column_words)
        .to_string()
}

/// Every extra join candidate over `fk` of `child` (and over the keys of
/// its parent after it), one draw of phrasings and values.
pub fn questions(
    schema: &Schema,
    child: &Table,
    fk: &ForeignKey,
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    let Some(link) = Link::new(schema, child, fk) else {
        return;
    };
    let Some(pn) = name_column(link.parent) else {
        return;
    };
    let (cq, pq) = (&child.quoted, &link.parent.quoted);
    let (cw, pw) = (
        table_noun(&child.name),
        parent_noun(&fk.columns, &singular(&table_noun(&link.parent.name))),
    );
    let from = format!("{cq} JOIN {pq} ON {}", link.on);
    let pnq = format!("{pq}.{}", pn.quoted);
    let fills = [
        ("c", cw.as_str()),
        ("p", pw.as_str()),
        ("n", &without_noun(&words(&pn.name), &pw)),
    ];
    let q = pick(
        rng,
        &[
            "How many {c} does each {p} have? Give the {p} {n}.",
            "For each {p}, count its {c}, with the {p} {n}.",
        ],
    );
    push(
        out,
        "join_count",
        fill(q, &fills),
        format!(
            "SELECT {pnq}, COUNT(*) FROM {from} GROUP BY {}",
            link.parent_key
        ),
    );
    let q = pick(
        rng,
        &[
            "Which {p} has the most {c}? Give its {n}.",
            "What is the {n} of the {p} with the most {c}?",
        ],
    );
    push(
        out,
        "join_top",
        fill(q, &fills),
        format!(
            "SELECT {pnq} FROM {from} GROUP BY {} ORDER BY COUNT(*) DESC LIMIT 1",
            link.parent_key
        ),
    );
    // (The child's name first: no sample is drawn for a child without one.)
    if let Some((cn, v)) = name_column(child).and_then(|cn| Some((cn, pn.samples.choose(rng)?))) {
        let q = pick(
            rng,
            &[
                "List the {cn} of the {c} of the {p} {v}.",
                "What are the {cn} of the {c} whose {p} is {v}?",
            ],
        );
        push(
            out,
            "join_filter",
            fill(
                q,
                &[
                    ("cn", &words(&cn.name)),
                    fills[0],
                    fills[1],
                    ("v", &shown(v)),
                ],
            ),
            format!("SELECT {cq}.{} FROM {from} WHERE {pnq} = {v}", cn.quoted),
        );
    }
    let child_measures = measures(child);
    for _ in 0..VALUES_PER_KEY {
        let Some(v) = pn.samples.choose(rng).cloned() else {
            break;
        };
        let fills = [("c", cw.as_str()), ("p", pw.as_str()), ("v", &shown(&v))];
        let q = pick(
            rng,
            &[
                "How many {c} does the {p} {v} have?",
                "How many {c} are there for the {p} {v}?",
            ],
        );
        push(
            out,
            "join_value_count",
            fill(q, &fills),
            format!("SELECT COUNT(*) FROM {from} WHERE {pnq} = {v}"),
        );
        if let Some(m) = child_measures.choose(rng) {
            let (func, word) = *[("AVG", "average"), ("MAX", "highest"), ("SUM", "total")]
                .choose(rng)
                .unwrap_or(&("AVG", "average"));
            let q = pick(
                rng,
                &[
                    "What is the {w} {m} of the {c} of the {p} {v}?",
                    "For the {p} {v}, what is the {w} {m} of its {c}?",
                ],
            );
            push(
                out,
                "join_value_aggregate",
                fill(
                    q,
                    &[
                        fills[0],
                        fills[1],
                        fills[2],
                        ("w", word),
                        ("m", &words(&m.name)),
                    ],
                ),
                format!(
                    "SELECT {func}({cq}.{}) FROM {from} WHERE {pnq} = {v}",
                    m.quoted
                ),
            );
        }
    }
    if let Some(m) = child_measures.choose(rng) {
        let mw = words(&m.name);
        let q = pick(
            rng,
            &[
                "What is the average {m} of the {c} of each {p}?",
                "For each {p}, what is the average {m} of its {c}?",
            ],
        );
        push(
            out,
            "join_group_average",
            fill(q, &[("c", &cw), ("p", &pw), ("m", &mw)]),
            format!(
                "SELECT {pnq}, AVG({cq}.{}) FROM {from} GROUP BY {}",
                m.quoted, link.parent_key
            ),
        );
        for (dir, word) in [("DESC", "highest"), ("ASC", "lowest")] {
            let q = pick(
                rng,
                &[
                    "Which {p} has the {w} average {m} of its {c}?",
                    "Which {p}'s {c} have the {w} average {m}?",
                ],
            );
            push(
                out,
                "join_group_top",
                fill(q, &[("c", &cw), ("p", &pw), ("m", &mw), ("w", word)]),
                format!(
                    "SELECT {pnq} FROM {from} GROUP BY {} ORDER BY AVG({cq}.{}) {dir} LIMIT 1",
                    link.parent_key, m.quoted
                ),
            );
        }
    }
    // Children by a category of their parent: "tracks on albums from 2020".
    if let Some(cn) = name_column(child) {
        let categories: Vec<&Column> = link
            .parent
            .columns
            .iter()
            .filter(|g| g.name != pn.name && super::roles::role(link.parent, g).is_category())
            .collect();
        if let Some(g) = categories.choose(rng) {
            if let Some(v) = g.samples.choose(rng) {
                let q = pick(
                    rng,
                    &[
                        "List the {cn} of the {c} whose {p} has {g} {v}.",
                        "Which {c} belong to a {p} with {g} {v}? Give their {cn}.",
                    ],
                );
                push(
                    out,
                    "join_parent_filter",
                    fill(
                        q,
                        &[
                            ("cn", &words(&cn.name)),
                            ("c", &cw),
                            ("p", &pw),
                            ("g", &words(&g.name)),
                            ("v", &shown(v)),
                        ],
                    ),
                    format!(
                        "SELECT {cq}.{} FROM {from} WHERE {pq}.{} = {v}",
                        cn.quoted, g.quoted
                    ),
                );
            }
        }
        two_hops(schema, &link, cn, rng, out);
    }
}

/// Over two keys in a row, child → parent → grandparent: "List the tracks
/// by the artist X", "How many tracks does each artist have?"
fn two_hops(
    schema: &Schema,
    first: &Link,
    cn: &Column,
    rng: &mut StdRng,
    out: &mut Vec<Candidate>,
) {
    for fk in &first.parent.foreign_keys {
        let Some(second) = Link::new(schema, first.parent, fk) else {
            continue;
        };
        if second.parent.name == first.child.name {
            continue;
        }
        let Some(gn) = name_column(second.parent) else {
            continue;
        };
        let (cq, gq) = (&first.child.quoted, &second.parent.quoted);
        let from = format!(
            "{cq} JOIN {} ON {} JOIN {gq} ON {}",
            first.parent.quoted, first.on, second.on
        );
        let (cw, gw) = (
            table_noun(&first.child.name),
            singular(&table_noun(&second.parent.name)),
        );
        let gnq = format!("{gq}.{}", gn.quoted);
        if let Some(v) = gn.samples.choose(rng) {
            let q = pick(
                rng,
                &[
                    "List the {cn} of the {c} by the {g} {v}.",
                    "Which {c} does the {g} {v} have? Give their {cn}.",
                ],
            );
            push(
                out,
                "join2_filter",
                fill(
                    q,
                    &[
                        ("cn", &words(&cn.name)),
                        ("c", &cw),
                        ("g", &gw),
                        ("v", &shown(v)),
                    ],
                ),
                format!("SELECT {cq}.{} FROM {from} WHERE {gnq} = {v}", cn.quoted),
            );
        }
        let q = pick(
            rng,
            &[
                "How many {c} does each {g} have?",
                "For each {g}, count its {c}.",
            ],
        );
        push(
            out,
            "join2_count",
            fill(q, &[("c", &cw), ("g", &gw)]),
            format!(
                "SELECT {gnq}, COUNT(*) FROM {from} GROUP BY {}",
                second.parent_key
            ),
        );
        if let Some(m) = measures(first.child).choose(rng) {
            let q = pick(
                rng,
                &[
                    "Which {g} has the highest average {m} of its {c}?",
                    "Which {g} has the {c} with the highest average {m}?",
                ],
            );
            push(
                out,
                "join2_top",
                fill(q, &[("c", &cw), ("g", &gw), ("m", &words(&m.name))]),
                format!(
                    "SELECT {gnq} FROM {from} GROUP BY {} ORDER BY AVG({cq}.{}) DESC LIMIT 1",
                    second.parent_key, m.quoted
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parent_noun, without_noun};

    #[test]
    fn a_parents_name_column_does_not_repeat_the_parent() {
        assert_eq!(
            without_noun("treatment type description", "treatment type"),
            "description"
        );
        assert_eq!(without_noun("name", "artist"), "name");
        assert_eq!(without_noun("artist", "artist"), "artist");
        assert_eq!(without_noun("artistic name", "artist"), "artistic name");
    }

    #[test]
    fn a_foreign_key_names_its_parent_by_its_own_words_when_they_say_more() {
        let key = |c: &str| vec![c.to_string()];
        assert_eq!(parent_noun(&key("SupportRepId"), "employee"), "support rep");
        assert_eq!(parent_noun(&key("CustomerId"), "customer"), "customer");
        assert_eq!(parent_noun(&key("ReportsTo"), "employee"), "employee");
        assert_eq!(parent_noun(&key("artist_id"), "artist"), "artist");
        assert_eq!(parent_noun(&key("home_team_id"), "team"), "home team");
        assert_eq!(parent_noun(&key("owner_id"), "owner"), "owner");
        assert_eq!(
            parent_noun(&key("treatment_type_code"), "treatment type"),
            "treatment type"
        );
        assert_eq!(parent_noun(&[], "album"), "album");
    }
}
