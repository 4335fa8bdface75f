//! # adoport (the binary's library)
//!
//! The composition root: it parses the command line ([`cli`]), assembles roles into a running
//! [`pipeline`], runs a role as a process ([`roles`]) and hosts the try-out and measuring tools
//! ([`demo`], [`sim`], [`bench`]). The stages themselves live in their crates
//! (`adoport-ingest`, `adoport-transform`, `adoport-publish`); nothing here talks to Azure
//! DevOps, evaluates jq or writes to Port except by calling them.

pub mod allocator;
pub mod bench;
pub mod bench_incremental;
pub mod bench_live;
pub mod bench_mapping;
pub mod bench_memory;
pub mod bench_organizations;
pub mod bench_processes;
pub mod bench_requests;
pub mod bench_scaling;
pub mod cli;
pub mod command;
pub mod demo;
pub mod dlq;
pub mod health;
pub mod mapping_cmd;
pub mod mapping_source;
pub mod operate;
pub mod pipeline;
pub mod port_reader;
pub mod port_triggers;
pub mod process_status;
pub mod replay;
pub mod roles;
pub mod sim;
pub mod starting;
