//! Drift's assembly: the gateway and the worker put together from the crates below
//! (`drift serve`, `drift worker`), with their configuration, and the client the command-line
//! tools reach a running gateway with. `drift dev` (`drift-dev`) builds on it.
//!
//! Layers, each crate depending only on those before it (`scripts/check-layers.py` holds it):
//! `drift-core` (pure) ← `drift-bus`, `drift-db` ← `drift-temporal` (adapters) ←
//! `drift-service` ← `drift-gateway` (transports) ← `drift-server` ← `drift-dev`,
//! `drift-bench` ← `drift` (the binary).

pub mod client;
pub mod config;
mod memory;
pub mod startup;
