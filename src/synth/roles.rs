//! What a column is for, read from its name, type, keys and values, so
//! that templates ask what an analyst would: keys and IDs are never
//! averaged or summed, phone numbers and e-mail addresses are never grouped
//! on, dates get year questions, money gets totals, and only a text column
//! with few distinct values is a category to count by.

use super::templates::{is_numeric, words, VALUES_PER_COLUMN};
use crate::sql::{Column, Table};

/// The role of a column in questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A primary or foreign key, an ID: joined on, counted, never computed.
    Key,
    /// A phone, fax, e-mail, postal code, address or web address: looked
    /// up, never grouped on or computed.
    Contact,
    /// A date or time: asked by year.
    Date,
    /// A year (a number).
    Year,
    /// An amount of money: totals and averages.
    Money,
    /// Any other number: averages, extremes, comparisons.
    Measure,
    /// Text with few distinct values that repeat: counted by, grouped on,
    /// filtered on.
    Category,
    /// Text that names a row (a name, a title).
    Name,
    /// A yes/no column (`abandoned_yn`, `is_active`, 0/1, Y/N): asked as
    /// "how many are …", never grouped on or computed with.
    Flag,
    /// Other text (free text, or too many distinct values to group on).
    Text,
}

impl Role {
    /// Numbers it makes sense to average, sum and compare.
    pub fn is_measure(self) -> bool {
        matches!(self, Role::Money | Role::Measure)
    }

    /// Values it makes sense to count and group by.
    pub fn is_category(self) -> bool {
        matches!(self, Role::Category | Role::Year)
    }
}

/// Words of contact details.
const CONTACT: &[&str] = &[
    "phone", "fax", "email", "mail", "postal", "zip", "postcode", "address", "website", "url",
    "mobile", "cell", "street",
];

/// Words of money.
const MONEY: &[&str] = &[
    "price", "cost", "total", "amount", "salary", "fee", "revenue", "sales", "balance", "payment",
    "income", "budget", "charge", "paid", "spent", "wage",
];

/// Text columns with at most this many distinct values, each used at least
/// twice on average, are categories.
const MAX_CATEGORY_VALUES: usize = 30;

/// Words of text columns that name something rows share (an artist, a
/// country), which people count and group by even with many values.
const SHARED_THINGS: &[&str] = &[
    "artist",
    "author",
    "composer",
    "singer",
    "band",
    "country",
    "city",
    "state",
    "region",
    "company",
    "genre",
    "type",
    "category",
    "kind",
    "class",
    "department",
    "team",
    "brand",
    "maker",
    "make",
    "label",
    "publisher",
    "nationality",
    "language",
    "status",
    "gender",
    "level",
    "position",
    "role",
    "owner",
    "manufacturer",
    "supplier",
    "vendor",
    "continent",
    "province",
    "county",
];

/// The role of column `c` of table `t`.
pub fn role(t: &Table, c: &Column) -> Role {
    let w = words(&c.name);
    let has = |list: &[&str]| w.split(' ').any(|x| list.contains(&x));
    let last = w.rsplit(' ').next().unwrap_or_default();
    let in_foreign_key = t
        .foreign_keys
        .iter()
        .any(|fk| fk.columns.iter().any(|k| k.eq_ignore_ascii_case(&c.name)));
    let typ = c.decl_type.to_ascii_uppercase();
    if c.primary_key && !(is_numeric(c) && super::lexicon::is_year(&w))
        || in_foreign_key
        || matches!(last, "id" | "key" | "guid" | "uuid")
    {
        return Role::Key;
    }
    if has(CONTACT) {
        return Role::Contact;
    }
    if flag_values(c).is_some() {
        return Role::Flag;
    }
    let dated = typ.contains("DATE") || typ.contains("TIME");
    let named_date = w
        .split(' ')
        .any(|x| x == "date" || x == "birthday" || x == "dob");
    if dated || (named_date && !is_numeric(c)) {
        return Role::Date;
    }
    if is_numeric(c) {
        return if super::lexicon::is_year(&w) {
            Role::Year
        } else if has(MONEY) {
            Role::Money
        } else {
            Role::Measure
        };
    }
    if w.split(' ').any(|x| x == "name" || x == "title") {
        return Role::Name;
    }
    // Samples hold every distinct value when there are fewer than the cap.
    let distinct = c.samples.len();
    let all_known = distinct < VALUES_PER_COLUMN;
    let rows = t.row_count as usize;
    let few = all_known && distinct > 0 && distinct <= MAX_CATEGORY_VALUES && distinct * 2 <= rows;
    let shared = has(SHARED_THINGS) && distinct > 0 && distinct < rows;
    if few || shared {
        Role::Category
    } else {
        Role::Text
    }
}

/// Stored spellings of yes and of no (as SQL literals).
const YES: &[&str] = &[
    "1", "'1'", "'Y'", "'y'", "'yes'", "'Yes'", "'YES'", "'T'", "'true'", "'TRUE'",
];
const NO: &[&str] = &[
    "0", "'0'", "'N'", "'n'", "'no'", "'No'", "'NO'", "'F'", "'false'", "'FALSE'",
];

/// The literals of yes and of no of a yes/no column (one whose distinct
/// values are a yes and a no, or which is named like one and holds only
/// yes/no values); `None` for any other column.
pub fn flag_values(c: &Column) -> Option<(String, Option<String>)> {
    let w = words(&c.name);
    let parts: Vec<&str> = w.split(' ').collect();
    let named = parts.last() == Some(&"yn")
        || (parts.len() > 1 && matches!(parts[0], "is" | "has" | "was"))
        || parts.last() == Some(&"flag");
    let yes = c.samples.iter().find(|v| YES.contains(&v.as_str()));
    let no = c.samples.iter().find(|v| NO.contains(&v.as_str()));
    let only_yes_no = !c.samples.is_empty()
        && c.samples
            .iter()
            .all(|v| YES.contains(&v.as_str()) || NO.contains(&v.as_str()));
    let two = yes.is_some() && no.is_some() && c.samples.len() == 2;
    match yes {
        Some(y) if only_yes_no && (two || named) => Some((y.clone(), no.cloned())),
        _ => None,
    }
}

/// What a yes/no column says of a row, as a predicate: `abandoned_yn` →
/// "are abandoned", `has_allergy` → "have allergy", `is_active` → "are
/// active", `explicit` → "are explicit".
pub fn flag_predicate(c: &Column) -> String {
    let w = words(&c.name);
    let mut parts: Vec<&str> = w.split(' ').collect();
    if matches!(parts.last(), Some(&"yn") | Some(&"flag")) && parts.len() > 1 {
        parts.pop();
    }
    let verb = match parts.first() {
        Some(&"has") if parts.len() > 1 => {
            parts.remove(0);
            "have"
        }
        Some(&"is") | Some(&"was") if parts.len() > 1 => {
            parts.remove(0);
            "are"
        }
        _ => "are",
    };
    format!("{verb} {}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ForeignKey;

    fn column(name: &str, decl_type: &str, samples: usize) -> Column {
        Column::for_test(
            name,
            decl_type,
            (0..samples).map(|i| format!("'v{i}'")).collect(),
        )
    }

    #[test]
    fn yes_no_columns_are_flags_asked_as_predicates() {
        let with = |name: &str, values: &[&str]| {
            Column::for_test(name, "", values.iter().map(|v| v.to_string()).collect())
        };
        let abandoned = with("abandoned_yn", &["'1'", "'0'"]);
        assert_eq!(
            flag_values(&abandoned),
            Some(("'1'".into(), Some("'0'".into())))
        );
        assert_eq!(flag_predicate(&abandoned), "are abandoned");
        let explicit = with("explicit", &["0", "1"]);
        assert_eq!(flag_values(&explicit), Some(("1".into(), Some("0".into()))));
        assert_eq!(flag_predicate(&explicit), "are explicit");
        // Named like a flag, only yes seen so far.
        assert_eq!(
            flag_values(&with("is_active", &["'Y'"])),
            Some(("'Y'".into(), None))
        );
        assert_eq!(flag_predicate(&with("has_allergy", &["1"])), "have allergy");
        // Not flags: other values, or one value under an ordinary name.
        assert_eq!(flag_values(&with("rating", &["1", "0", "2"])), None);
        assert_eq!(flag_values(&with("stock", &["1"])), None);
        assert_eq!(flag_values(&with("gender", &["'M'", "'F'"])), None);
    }

    #[test]
    fn roles_of_a_real_schema_s_columns() {
        let mut t = Table {
            name: "Customer".into(),
            quoted: "Customer".into(),
            columns: Vec::new(),
            primary_key: vec!["CustomerId".into()],
            foreign_keys: vec![ForeignKey {
                columns: vec!["SupportRepId".into()],
                table: "Employee".into(),
                to_columns: vec!["EmployeeId".into()],
            }],
            row_count: 59,
            is_view: false,
        };
        let cases = [
            (column("CustomerId", "INTEGER", 50), Role::Key),
            (column("SupportRepId", "INTEGER", 3), Role::Key),
            (column("Phone", "NVARCHAR(24)", 50), Role::Contact),
            (column("Fax", "NVARCHAR(24)", 12), Role::Contact),
            (column("Email", "NVARCHAR(60)", 50), Role::Contact),
            (column("PostalCode", "NVARCHAR(10)", 50), Role::Contact),
            (column("InvoiceDate", "DATETIME", 50), Role::Date),
            (column("Total", "NUMERIC(10,2)", 50), Role::Money),
            (column("UnitPrice", "NUMERIC(10,2)", 2), Role::Money),
            (column("Milliseconds", "INTEGER", 50), Role::Measure),
            (column("year", "INTEGER", 14), Role::Year),
            (column("Country", "NVARCHAR(40)", 24), Role::Category),
            (column("FirstName", "NVARCHAR(40)", 50), Role::Name),
            (column("Company", "NVARCHAR(80)", 10), Role::Category),
            (column("Company", "NVARCHAR(80)", 40), Role::Category),
            (column("Address", "NVARCHAR(70)", 50), Role::Contact),
            (column("Composer", "NVARCHAR(220)", 50), Role::Category),
            (column("Notes", "TEXT", 40), Role::Text),
            (column("Notes", "TEXT", 10), Role::Category),
        ];
        for (c, want) in cases {
            t.columns = vec![c.clone()];
            assert_eq!(role(&t, &c), want, "{}", c.name);
        }
    }
}
