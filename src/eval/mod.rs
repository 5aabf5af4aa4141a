//! Measuring the engine: question sets with gold SQL ([`set`]).

pub mod set;

pub use set::{load_set, SetItem};
