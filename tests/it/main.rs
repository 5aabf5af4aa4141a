//! The one integration-test binary. Each module guards one area.

mod common;

/// Watches allocations of the hostile-input cases (see `hostile::guard`).
#[global_allocator]
static ALLOCATOR: hostile::Watching = hostile::Watching;

mod adapt;
mod agent;
mod chat;
mod cli;
mod constrained;
mod eval;
mod generate;
mod grammar;
mod hosted;
mod hostile;
mod hub;
mod llamacpp;
mod lora;
mod model;
mod page;
mod repair;
mod server;
mod sql;
mod tiny;
mod tokenizer;
mod tune;
mod walks;
