//! Drift: a Temporal-powered low-code workflow platform with a real-time gateway. The library
//! is `drift-server` (on the pure core, `drift-core`); `drift bench` is `drift-bench`. This crate
//! holds the binary and the integration tests, and names both libraries as `drift`.

pub use drift_bench as bench;
pub use drift_server::*;
