//! Temporal integration: the generic workflow, its activities, the worker and the client
//! calls the gateway makes.

pub mod activities;
pub mod client;
pub mod delivery;
pub mod worker;
pub mod workflow;
