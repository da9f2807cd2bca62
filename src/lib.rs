//! Drift: a Temporal-powered low-code workflow platform with a real-time gateway.

pub mod bench;
pub mod bus;
pub mod config;
pub mod dev;
pub mod dsl;
pub mod engine;
pub mod gateway;
pub mod model;
pub mod server;
pub mod standins;
pub mod telemetry;
pub mod temporal;
pub mod webhook;
