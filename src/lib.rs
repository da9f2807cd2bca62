//! Drift: a Temporal-powered low-code workflow platform with a real-time gateway. The library
//! is `drift-server` (on the pure core, `drift-core`); `drift dev` is `drift-dev` and `drift
//! bench` is `drift-bench`. This crate holds the binary and the integration tests, and names the
//! libraries as `drift` (`drift::dev`, `drift::bench`).

pub use drift_bench as bench;
pub use drift_dev as dev;
pub use drift_server::*;
