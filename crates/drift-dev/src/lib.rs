//! `drift dev` and what it runs around the server: a Temporal dev server and redis-server as
//! supervised children (`processes`, which the integration tests use too), and small local
//! stand-ins for the APIs the examples call (`standins`). None of it is in a production
//! gateway's library.

mod args;
mod processes;
mod run;
pub mod standins;

pub use args::DevArgs;
pub use processes::*;
pub use run::run;

use drift_server::config::ServeArgs;
use drift_server::startup::Settings;

/// `drift serve`'s settings, with the examples' stand-ins when its hidden `--stand-ins` asks
/// (the integration tests' and `scripts/cluster.sh`'s gateways point the examples at them).
pub fn serve_settings(a: ServeArgs) -> Settings {
    let stand_ins = a.stand_ins;
    let settings = Settings::from(a);
    if stand_ins { with_stand_ins(settings) } else { settings }
}

/// Serves the stand-ins under `/stand-ins` and points the definitions' `apiBase` at them.
fn with_stand_ins(mut s: Settings) -> Settings {
    s.routes = std::mem::take(&mut s.routes).merge(standins::router());
    s.own_enums.push(("apiBase".into(), "/stand-ins".into()));
    s
}
