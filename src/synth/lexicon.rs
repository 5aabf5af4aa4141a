//! The English that analysts use for common column names, so that template
//! questions read the way people ask: "the most popular song" for
//! `ORDER BY popularity DESC`, "the oldest" for `ORDER BY year ASC`, "who
//! sings" for an `artist`, "genre" for a column called `top genre`.
//! Matching is on the column's words, so it carries to other schemas with
//! such columns; columns it does not know get the plain templates only.

/// How the values of a numeric column read as adjectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Degrees {
    /// The plain adjective of "How {adj} is X?" (`popular`, `long`).
    pub adjective: &'static str,
    /// The superlative of the highest values (`most popular`, `longest`).
    pub highest: &'static str,
    /// The superlative of the lowest values (`least popular`, `shortest`).
    pub lowest: &'static str,
    /// The comparative of higher values (`more popular than`, `longer than`).
    pub higher: &'static str,
    /// The comparative of lower values (`less popular than`, `shorter than`).
    pub lower: &'static str,
    /// Whether a group of rows (an artist, a genre) can be said to be it on
    /// average: an artist is "least popular", but not "shortest".
    pub of_groups: bool,
}

const fn degrees(
    adjective: &'static str,
    highest: &'static str,
    lowest: &'static str,
    higher: &'static str,
    lower: &'static str,
    of_groups: bool,
) -> Degrees {
    Degrees {
        adjective,
        highest,
        lowest,
        higher,
        lower,
        of_groups,
    }
}

/// Column words (any of them) and the adjectives of their values.
const DEGREES: &[(&[&str], Degrees)] = &[
    (
        &["popularity", "popular"],
        degrees(
            "popular",
            "most popular",
            "least popular",
            "more popular than",
            "less popular than",
            true,
        ),
    ),
    (
        &["length", "duration", "runtime"],
        degrees(
            "long",
            "longest",
            "shortest",
            "longer than",
            "shorter than",
            false,
        ),
    ),
    (
        &["energy"],
        degrees(
            "energetic",
            "most energetic",
            "least energetic",
            "more energetic than",
            "less energetic than",
            true,
        ),
    ),
    (
        &["danceability"],
        degrees(
            "danceable",
            "most danceable",
            "least danceable",
            "more danceable than",
            "less danceable than",
            true,
        ),
    ),
    (
        &["acousticness"],
        degrees(
            "acoustic",
            "most acoustic",
            "least acoustic",
            "more acoustic than",
            "less acoustic than",
            true,
        ),
    ),
    (
        &["loudness", "volume"],
        degrees(
            "loud",
            "loudest",
            "quietest",
            "louder than",
            "quieter than",
            true,
        ),
    ),
    (
        &["tempo", "bpm", "speed"],
        degrees(
            "fast",
            "fastest",
            "slowest",
            "faster than",
            "slower than",
            false,
        ),
    ),
    (
        &["price", "cost"],
        degrees(
            "expensive",
            "most expensive",
            "cheapest",
            "more expensive than",
            "cheaper than",
            false,
        ),
    ),
    (
        &["age"],
        degrees(
            "old",
            "oldest",
            "youngest",
            "older than",
            "younger than",
            false,
        ),
    ),
    (
        &["height"],
        degrees(
            "tall",
            "tallest",
            "shortest",
            "taller than",
            "shorter than",
            false,
        ),
    ),
    (
        &["weight"],
        degrees(
            "heavy",
            "heaviest",
            "lightest",
            "heavier than",
            "lighter than",
            false,
        ),
    ),
    (
        &["size", "area", "population", "capacity"],
        degrees(
            "large",
            "largest",
            "smallest",
            "larger than",
            "smaller than",
            false,
        ),
    ),
];

/// The adjectives of a numeric column's values, when its words name a
/// known quantity (`beats per minute` counts as a tempo).
pub fn degrees_of(column_words: &str) -> Option<Degrees> {
    if column_words == "beats per minute" {
        return degrees_of("tempo");
    }
    let words: Vec<&str> = column_words.split_whitespace().collect();
    DEGREES
        .iter()
        .find(|(keys, _)| words.iter().any(|w| keys.contains(w)))
        .map(|(_, d)| *d)
}

/// Whether a numeric column holds years (`year`, `release year`): its
/// values read as "in 2020", "before 2015", the lowest as "oldest".
pub fn is_year(column_words: &str) -> bool {
    column_words
        .split_whitespace()
        .any(|w| w == "year" || w == "yr")
}

/// Verbs that ask for a person-like column by a row's name: "Who sings
/// X?" for an `artist`. Empty for columns that name no person.
pub fn who_verbs(column_words: &str) -> &'static [&'static str] {
    const VERBS: &[(&str, &[&str])] = &[
        ("artist", &["sings", "performs", "recorded"]),
        ("singer", &["sings"]),
        ("band", &["plays", "recorded"]),
        ("author", &["wrote"]),
        ("writer", &["wrote"]),
        ("director", &["directed"]),
        ("composer", &["composed"]),
        ("creator", &["created"]),
        ("owner", &["owns"]),
        ("manager", &["manages"]),
    ];
    let last = column_words.split_whitespace().last().unwrap_or_default();
    VERBS
        .iter()
        .find(|(w, _)| *w == last)
        .map(|(_, v)| *v)
        .unwrap_or(&[])
}

/// Units that end a column's name (`loudness.dB`, `length_ms`) and that
/// questions leave out.
const UNITS: &[&str] = &["db", "ms", "s", "sec", "kg", "cm", "km", "usd", "pct"];

/// The short name people use for a two-word column: `top genre` → `genre`,
/// `loudness db` → `loudness`. `None` when the name is one word or longer
/// than two.
pub fn short_name(column_words: &str) -> Option<String> {
    let words: Vec<&str> = column_words.split_whitespace().collect();
    match words.as_slice() {
        [first, unit] if UNITS.contains(unit) => Some((*first).to_string()),
        [_, last] if !UNITS.contains(last) => Some((*last).to_string()),
        _ => None,
    }
}

/// The plural of an English noun phrase's last word: `genre` → `genres`,
/// `category` → `categories`, `match` → `matches`.
pub fn plural(noun: &str) -> String {
    let vowel_before_y = noun
        .chars()
        .rev()
        .nth(1)
        .is_some_and(|c| "aeiou".contains(c));
    if noun.ends_with('y') && !vowel_before_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| noun.ends_with(e))
    {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_quantities_read_as_adjectives() {
        assert_eq!(degrees_of("popularity").unwrap().lowest, "least popular");
        assert_eq!(degrees_of("length").unwrap().highest, "longest");
        assert_eq!(degrees_of("beats per minute").unwrap().highest, "fastest");
        assert_eq!(degrees_of("loudness db").unwrap().lowest, "quietest");
        assert!(degrees_of("liveness").is_none());
        assert!(is_year("year") && is_year("release year") && !is_year("years active x"));
    }

    #[test]
    fn short_names_and_plurals() {
        assert_eq!(short_name("top genre").as_deref(), Some("genre"));
        assert_eq!(short_name("loudness db").as_deref(), Some("loudness"));
        assert_eq!(short_name("beats per minute"), None);
        assert_eq!(short_name("artist"), None);
        for (s, p) in [
            ("genre", "genres"),
            ("category", "categories"),
            ("day", "days"),
            ("match", "matches"),
            ("class", "classes"),
        ] {
            assert_eq!(plural(s), p);
        }
        assert_eq!(who_verbs("artist")[0], "sings");
        assert!(who_verbs("title").is_empty());
    }
}
