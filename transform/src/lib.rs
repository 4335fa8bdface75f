//! # adoport-transform
//!
//! The transform stage is pure: `RawEvent` + mapping → `EntityChange`s. It does no network I/O
//! besides the broker (and fetching the mapping); every Azure DevOps call belongs to ingest and
//! every Port write to publish.
//!
//! - [`jq`]: jq expressions compiled once with jaq and run on `serde_json` values (Ocean's
//!   dialect: single-quoted literals, no environment; integral numbers printed as integers);
//!   the common shapes (literals, key paths, `//`, `+`, `tostring`, `gsub` of plain text) also
//!   get a fast path on `serde_json` that answers only where its answer is jaq's;
//! - [`mapping`]: the port-app-config compiled into a [`mapping::CompiledMapping`] and the
//!   rules that turn one raw item into entity changes and item problems;
//! - [`error`]: why a mapping cannot be used;
//! - [`evaluator`]: the threads the worker maps items on, sized for the jq limits, with a
//!   watchdog;
//! - [`worker`]: the consumer loop (raw events in, changes out, ack after confirm; an item whose
//!   expression ran away is dead-lettered, the rest of its event goes on).
//!
//! Mappings are compiled once per mapping version and evaluated in synchronous code: jaq values
//! never cross an `.await`.

pub mod error;
pub mod evaluator;
pub mod gitops;
pub mod jq;
pub mod mapping;
pub mod worker;

pub use error::MappingError;
pub use jq::{JqError, JqLimits, JqProgram, expose_environment};
pub use mapping::{CompiledMapping, ItemProblem, KindOutcome, MappedChange, Resources};
