//! Integration tests: the SQL grammar.
