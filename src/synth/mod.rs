//! Training pairs for a database: generated (by templates over the schema
//! and its real values, see [`templates`], or by the model itself from
//! seed questions, see [`model`]) and filtered ([`filter`]): only
//! pairs whose SQL runs read-only and returns rows, one shape at most a few
//! times, and nothing overlapping the evaluation set.

mod analyst;
pub mod filter;
mod joined;
mod lexicon;
pub mod model;
mod pairs;
mod roles;
pub mod templates;

pub use filter::{normalized_sql, skeleton, Filter, Rejection};
pub use pairs::{filter_for, template_pairs, SynthPair};
pub use templates::{candidates, interleave, with_values, Candidate, VALUES_PER_COLUMN};
