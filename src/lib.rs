//! Drift: a Temporal-powered low-code workflow platform with a real-time gateway. This crate
//! is the `drift` binary's command line (each tool owning its arguments) and the integration
//! tests' one name for the crates below it (`drift::bus`, `drift::dev`, …).

pub mod cli;
pub mod definitions;
pub mod keys;

pub use drift_bench as bench;
pub use drift_bus as bus;
pub use drift_bus::{Layout, RedisKeys};
pub use drift_core::domain::{self, ScopedWorkflowId, TenantId, WorkflowId};
pub use drift_core::{dsl, engine, metrics};
pub use drift_dev as dev;
pub use drift_gateway::Outage;
pub use drift_server::{client, config, startup};
pub use drift_service::{self as service, Tokens, telemetry};
pub use drift_temporal::{self as temporal, TemporalConfig};
