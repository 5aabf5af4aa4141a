//! The tables a question needs, when a database's whole schema would make
//! the prompt too long: tables ranked by how the question names them (the
//! table's words, its columns' words, its values), their foreign-key
//! neighbours after them, kept in rank order while the prompt fits. Only
//! the prompt is focused: the grammar still allows every table.

use crate::error::Result;
use crate::sql::{Schema, Table};

/// `schema` narrowed to the tables most relevant to `question` that fit:
/// the whole schema when `fits` accepts it, else tables added in order of
/// relevance (at least the first) while `fits` accepts the result. Tables
/// keep their order in `schema`.
pub fn focus_schema(
    schema: &Schema,
    question: &str,
    fits: &mut dyn FnMut(&Schema) -> Result<bool>,
) -> Result<Schema> {
    if fits(schema)? {
        return Ok(schema.clone());
    }
    let ranked = rank_tables(schema, question);
    let mut kept: Vec<usize> = Vec::new();
    for &t in &ranked {
        kept.push(t);
        if kept.len() > 1 && !fits(&subset(schema, &kept))? {
            kept.pop();
        }
    }
    Ok(subset(schema, &kept))
}

/// Indices of `schema`'s tables, most relevant to `question` first: by
/// score (a table's own words count most, then its columns' words and its
/// values), then the foreign-key neighbours of scored tables, then the
/// rest, each group in schema order.
pub fn rank_tables(schema: &Schema, question: &str) -> Vec<usize> {
    let asked = words_of(question);
    let scores: Vec<usize> = schema.tables.iter().map(|t| score(t, &asked)).collect();
    let linked = |i: usize| {
        let t = &schema.tables[i];
        schema.tables.iter().enumerate().any(|(j, other)| {
            scores[j] > 0
                && (t
                    .foreign_keys
                    .iter()
                    .any(|fk| fk.table.eq_ignore_ascii_case(&other.name))
                    || other
                        .foreign_keys
                        .iter()
                        .any(|fk| fk.table.eq_ignore_ascii_case(&t.name)))
        })
    };
    let mut order: Vec<usize> = (0..schema.tables.len()).collect();
    order.sort_by_key(|&i| {
        let group = if scores[i] > 0 {
            0
        } else if linked(i) {
            1
        } else {
            2
        };
        (group, std::cmp::Reverse(scores[i]), i)
    });
    order
}

/// How strongly `asked` (the question's words) names table `t`.
fn score(t: &Table, asked: &[String]) -> usize {
    let hits = |name: &str| words_of(name).iter().filter(|w| asked.contains(w)).count();
    let own = hits(&t.name) * 4;
    let columns: usize = t.columns.iter().map(|c| hits(&c.name).min(1) * 2).sum();
    let values: usize = t
        .columns
        .iter()
        .flat_map(|c| &c.samples)
        .filter(|v| {
            let v = words_of(v);
            !v.is_empty() && v.iter().all(|w| asked.contains(w))
        })
        .count();
    own + columns + values
}

/// Lowercase words of `text` (names split as [`crate::sql::name_words`]
/// splits them), a plural `s` dropped, common words left out.
fn words_of(text: &str) -> Vec<String> {
    const COMMON: &[&str] = &[
        "the", "a", "an", "of", "in", "on", "for", "to", "and", "or", "is", "are", "what", "which",
        "who", "how", "many", "much", "with", "by", "each", "all", "that", "there", "do", "does",
        "have", "has", "id", "name", "list", "show", "give", "me", "their", "its", "from",
    ];
    crate::sql::name_words(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if stem.len() > 2 && !w.ends_with("ss") => stem.to_string(),
            _ => w.to_string(),
        })
        .filter(|w| !COMMON.contains(&w.as_str()))
        .collect()
}

/// The tables of `schema` at `indices`, in schema order.
fn subset(schema: &Schema, indices: &[usize]) -> Schema {
    Schema {
        tables: schema
            .tables
            .iter()
            .enumerate()
            .filter(|(i, _)| indices.contains(i))
            .map(|(_, t)| t.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Column, ForeignKey};

    fn table(name: &str, columns: &[(&str, &[&str])], parent: Option<&str>) -> Table {
        Table {
            name: name.into(),
            quoted: name.into(),
            is_view: false,
            columns: columns
                .iter()
                .map(|(c, samples)| {
                    let samples = samples.iter().map(|s| format!("'{s}'")).collect();
                    Column::for_test(c, "TEXT", samples)
                })
                .collect(),
            primary_key: Vec::new(),
            foreign_keys: parent
                .map(|p| ForeignKey {
                    columns: vec![format!("{p}Id")],
                    table: p.into(),
                    to_columns: Vec::new(),
                })
                .into_iter()
                .collect(),
            row_count: 10,
        }
    }

    fn chinook_like() -> Schema {
        Schema {
            tables: vec![
                table("Artist", &[("Name", &["AC/DC", "Queen"])], None),
                table(
                    "Album",
                    &[("Title", &["Jagged Little Pill"])],
                    Some("Artist"),
                ),
                table(
                    "Track",
                    &[("Name", &[]), ("Composer", &[]), ("Milliseconds", &[])],
                    Some("Album"),
                ),
                table("Employee", &[("LastName", &[]), ("HireDate", &[])], None),
                table(
                    "Customer",
                    &[("Country", &["Brazil"]), ("Email", &[])],
                    Some("Employee"),
                ),
                table(
                    "Invoice",
                    &[("BillingCountry", &["Brazil"]), ("Total", &[])],
                    Some("Customer"),
                ),
                table("Playlist", &[("Name", &["Music"])], None),
            ],
        }
    }

    fn names(schema: &Schema, order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&i| schema.tables[i].name.clone())
            .collect()
    }

    #[test]
    fn tables_the_question_names_come_first_then_their_neighbours() {
        let s = chinook_like();
        let order = rank_tables(&s, "How many tracks does each album have?");
        assert_eq!(&names(&s, &order)[..2], ["Album", "Track"]);
        assert_eq!(names(&s, &order)[2], "Artist", "a neighbour of Album");
        // A value names its table: Queen is an artist.
        let order = rank_tables(&s, "List the records by Queen");
        assert_eq!(names(&s, &order)[0], "Artist");
        let order = rank_tables(&s, "List the albums by Queen");
        assert_eq!(&names(&s, &order)[..2], ["Album", "Artist"]);
        // Column words: composer is a column of Track.
        let order = rank_tables(&s, "Which composer wrote the longest song?");
        assert_eq!(names(&s, &order)[0], "Track");
        let order = rank_tables(&s, "What is the total of the invoices from Brazil?");
        assert_eq!(names(&s, &order)[0], "Invoice");
    }

    #[test]
    fn a_schema_that_fits_is_kept_whole_and_one_that_does_not_is_cut_by_rank() {
        let s = chinook_like();
        let whole = focus_schema(&s, "anything", &mut |_| Ok(true)).unwrap();
        assert_eq!(whole, s);
        let three = focus_schema(&s, "How many tracks does each album have?", &mut |x| {
            Ok(x.tables.len() <= 3)
        })
        .unwrap();
        let kept: Vec<&str> = three.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(kept, ["Artist", "Album", "Track"], "schema order");
        // Nothing fits: the most relevant table is still shown.
        let one = focus_schema(&s, "List the records by Queen", &mut |_| Ok(false)).unwrap();
        assert_eq!(one.tables.len(), 1);
        assert_eq!(one.tables[0].name, "Artist");
    }
}
