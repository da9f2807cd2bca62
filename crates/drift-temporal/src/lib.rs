//! The Temporal adapter: the generic workflow and its delivery companion, their activities,
//! the worker that runs them, and the client calls the service layer makes; with what those
//! activities reach out through: webhook delivery and the egress guard.

mod activities;
mod client;
mod delivery;
pub mod egress;
mod payload;
pub mod replay;
pub mod search;
pub mod webhook;
mod worker;

/// The Temporal SDK's OpenTelemetry support: its interceptors carry the trace through
/// Temporal's headers (starts, signals, the workflow, its activities and children), and its
/// id generator and span processor make workflow spans replay-safe.
pub mod trace {
    pub use temporalio_sdk::opentelemetry::{OpenTelemetryPlugin, WorkflowIdGenerator, WorkflowSpanProcessor};
}
mod workflow;

pub use client::{
    EndedAs, Inspection, START_TURN_WAIT, STARTS_IN_FLIGHT, Temporal, TemporalConfig, TemporalError, connect,
};
pub use delivery::DeliveryState;
pub use worker::{WorkerConfig, on_own_thread, spawn as spawn_worker};
