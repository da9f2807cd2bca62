use clap::Parser;
use drift::cli::{Cli, Cmd};

// A gateway and worker allocate for every request, message and workflow activation (glibc's
// malloc and free were a seventh of the process's CPU under load): mimalloc does that for less.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    drift::telemetry::init_tracing();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Dev(a) => drift::dev::run(a).await,
            Cmd::Serve(a) => drift::startup::serve(drift::dev::serve_settings(a)).await,
            Cmd::Worker(a) => drift::startup::worker(a).await,
            Cmd::Bench(a) => drift::bench::run(a).await,
            Cmd::Keys(a) => drift::keys::run(a).await,
            Cmd::Definitions(a) => drift::definitions::run(a).await,
        }
    });
    // A worker thread still busy after the drain must not hold the process: its join was given
    // up, and the runtime does not wait for it either.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
