//! # adoport-shared
//!
//! What the three roles (ingest, transform, publish) agree on, and nothing more:
//!
//! - [`config`]: every setting, read from the environment once and validated at start-up;
//! - [`port_app_config`]: the user's mapping (Port's port-app-config), parsed and checked;
//! - [`mapping_versions`]: the mapping version every role of a process follows, and how a new
//!   one replaces it;
//! - [`messages`]: the versioned message contracts that travel between roles;
//! - [`topology`]: the broker's exchanges and queues, by name;
//! - [`bus`]: publishing and consuming those messages on RabbitMQ or in process;
//! - [`http`]: the one builder of outgoing HTTP clients (proxies, extra trusted CAs);
//! - [`port`]: the one Port client (sign-in, token cache, retry classifier and driver) that
//!   publish, ingest's actions executor and the binary build their calls on;
//! - [`metrics`]: the counters the stages keep for `/metrics` (per kind, HTTP, resync);
//! - [`shutdown`] and [`telemetry`]: how every process stops and reports.
//!
//! This crate must not know about Azure DevOps or jq, nor what a Port call means: those belong
//! to the stages. How to reach Port is here only because no stage may import another.

pub mod bus;
pub mod config;
pub mod http;
pub mod mapping_versions;
pub mod messages;
pub mod metrics;
pub mod port;
pub mod port_app_config;
pub mod shutdown;
pub mod telemetry;
pub mod topology;
pub mod typed_id;
