//! Whether a question asks for a change to the database (delete, update,
//! insert, drop, create…) rather than about its data. sqlagent only reads:
//! such a question gets a clear answer saying so before any model runs,
//! whatever the grammar would have made of it (under a grammar, "Delete all
//! songs by Ed Sheeran" would otherwise become some SELECT that runs).
//!
//! The test is on the question's opening words, after polite lead-ins
//! ("please", "can you", "I'd like to"): an imperative change verb there is
//! a request, while the same word later or as a noun is a question about
//! data ("How many songs were added in 2020?", "Change in sales by year").

/// Verbs that ask for a change wherever they open a request.
const CHANGE_VERBS: &[&str] = &[
    "delete",
    "remove",
    "drop",
    "truncate",
    "erase",
    "wipe",
    "purge",
    "insert",
    "create",
    "alter",
    "rename",
    "update",
    "modify",
    "overwrite",
    "upsert",
    "edit",
    "pragma",
    "attach",
    "detach",
    "vacuum",
    "reindex",
];

/// Verbs that ask for a change when a determiner follows them ("Set the
/// price …", "Change all genres …"), and are nouns or reads otherwise
/// ("Set of customers …", "Change in revenue …").
const CHANGE_VERBS_WITH_OBJECT: &[&str] = &[
    "add", "change", "set", "replace", "increase", "decrease", "raise", "lower", "reduce",
    "double", "mark", "move", "clear", "reset", "put", "store", "save", "write", "fix", "correct",
    "assign",
];

/// Words that open the object of a change verb.
const DETERMINERS: &[&str] = &[
    "the", "all", "every", "each", "a", "an", "my", "our", "their", "his", "her", "its", "this",
    "that", "these", "those", "any", "some", "new",
];

/// Polite or framing lead-ins skipped before the verb, longest first.
const LEAD_INS: &[&str] = &[
    "i would like you to",
    "i'd like you to",
    "i want you to",
    "i would like to",
    "i'd like to",
    "i want to",
    "i need to",
    "we need to",
    "we want to",
    "go ahead and",
    "could you please",
    "can you please",
    "would you please",
    "could you",
    "can you",
    "would you",
    "will you",
    "can we",
    "could we",
    "let's",
    "lets",
    "please",
    "kindly",
    "now",
    "then",
    "just",
    "also",
];

/// The change a question asks for, as its verb (lowercase), or `None` for a
/// question about the data.
///
/// ```
/// use sqlagent::agent::requested_change;
/// assert_eq!(requested_change("Delete all songs by Ed Sheeran").as_deref(), Some("delete"));
/// assert_eq!(requested_change("Please set the price of track 3 to 1.99").as_deref(), Some("set"));
/// assert_eq!(requested_change("How many songs were added in 2020?"), None);
/// ```
pub fn requested_change(question: &str) -> Option<String> {
    let lower = question.trim().to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ':' | ';'))
        .filter(|w| !w.is_empty())
        .collect();
    let lead_in = |words: &[&str]| {
        LEAD_INS.iter().find_map(|lead| {
            let lead: Vec<&str> = lead.split(' ').collect();
            words.starts_with(&lead).then_some(lead.len())
        })
    };
    while let Some(skip) = lead_in(&words) {
        words.drain(..skip);
    }
    let verb = *words.first()?;
    let next = words.get(1).copied().unwrap_or_default();
    let asks = CHANGE_VERBS.contains(&verb)
        || (CHANGE_VERBS_WITH_OBJECT.contains(&verb) && DETERMINERS.contains(&next))
        // `ADD COLUMN`, `REPLACE INTO`, `INSERT OR …` written as SQL.
        || (verb == "replace" && next == "into");
    asks.then(|| verb.to_string())
}

#[cfg(test)]
mod tests {
    use super::requested_change;

    #[test]
    fn requests_for_a_change_are_told_apart_from_questions() {
        let changes = [
            ("Delete all songs by Ed Sheeran", "delete"),
            ("delete from songs where id = 3", "delete"),
            ("Please remove the customer named Ann", "remove"),
            ("Can you update the price of track 3?", "update"),
            ("Could you please drop the invoices table", "drop"),
            ("I'd like to add a new artist called Nova", "add"),
            ("Set the genre of every song to pop", "set"),
            ("Change all genres to 'rock'", "change"),
            ("INSERT INTO artists VALUES (1, 'x')", "insert"),
            ("Let's create a table of favourites", "create"),
            ("Increase the price of all tracks by 10%", "increase"),
            ("Mark every invoice as paid.", "mark"),
            ("REPLACE INTO artists VALUES (1, 'x')", "replace"),
            ("Go ahead and truncate the log", "truncate"),
            ("PRAGMA writable_schema = 1", "pragma"),
        ];
        for (question, verb) in changes {
            assert_eq!(
                requested_change(question).as_deref(),
                Some(verb),
                "{question}"
            );
        }
        let reads = [
            "How many songs were added in 2020?",
            "Which customers changed their address?",
            "Change in sales from 2020 to 2021 by country",
            "Set of artists with more than two albums",
            "Add up the totals of all invoices",
            "List the deleted accounts",
            "What is the update date of each record?",
            "Show the increase in revenue by year",
            "Which tracks were removed from playlists?",
            "Can you show the top 5 artists?",
            "Please list the albums by AC/DC",
            "created_at of the latest invoice",
            "",
        ];
        for question in reads {
            assert_eq!(requested_change(question), None, "{question}");
        }
    }
}
