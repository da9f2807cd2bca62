//! The `drift` command line: one subcommand per tool, each tool owning its arguments.

use crate::definitions::DefinitionsArgs;
use crate::keys::KeysArgs;
use clap::{Parser, Subcommand};
use drift_bench::BenchArgs;
use drift_dev::DevArgs;
use drift_server::config::{ServeArgs, WorkerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "drift",
    version,
    about = "Drift: Temporal-powered low-code workflows with a real-time gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Everything on one machine: starts Temporal and Redis (unless addresses are given), runs
    /// gateway + worker in one process, loads the examples and their local API stand-ins.
    Dev(DevArgs),
    /// Gateway only (stateless; run any number behind a load balancer).
    Serve(ServeArgs),
    /// Temporal worker only (run any number).
    Worker(WorkerArgs),
    /// Measures sync round trips (start, resume) against a running gateway, next to a bare
    /// HTTP round trip baseline measured in the same process.
    Bench(BenchArgs),
    /// Manages API keys in the key store: create (the key is shown once), list, revoke.
    Keys(KeysArgs),
    /// Definitions kept in a folder (git) against a running gateway: validate, push (publish
    /// and activate what changed), pull. For CI pipelines.
    Definitions(DefinitionsArgs),
}
