//! Drift's server library: the gateway and the worker (`drift serve`, `drift worker`), which
//! `drift dev` (the `drift-dev` crate) builds on.
//!
//! Layers, each depending only on those before it:
//! `expr` ← `dsl` ← `engine` (the `drift-core` crate, pure) ← `domain` ← `bus`, `temporal`
//! (adapters) ← `service` ← `gateway` (transports) ← `startup`. Modules are private; what the
//! binary and the integration tests need is public below.

mod admin;
pub mod bus;
pub mod client;
mod db;
mod definitions_cli;
mod digest;
pub mod domain;
mod egress;
mod gateway;
mod memory;
mod service;
pub mod temporal;
mod webhook;

pub mod config;
pub mod startup;
pub mod telemetry;

// The pure core, under the names the rest of the crate has always used.
use drift_core::{dsl, engine};

pub use admin::{key_to_keep, keys};
pub use bus::{Layout, RedisKeys};
pub use definitions_cli::run as definitions;
pub use domain::{ScopedWorkflowId, TenantId, WorkflowId};
pub use gateway::Outage;
pub use service::Tokens;
pub use temporal::TemporalConfig;
