//! `drift bench`'s command line.

use clap::{Args, Subcommand};
use drift_server::config::GatewayClientArgs;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Temporal the floor runs on (the gateway's). Default: what `drift dev` wrote in its data
    /// folder (`endpoints.json`).
    #[arg(long, global = true)]
    pub temporal_address: Option<String>,
    /// Redis the floor publishes to (the gateway's). Default: as for `--temporal-address`.
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// The gateway's Redis Cluster instead (host:port,…), for the floor and fanout's publishes.
    #[arg(long, global = true, value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// Skip the raw-SDK floor (e.g. against a remote gateway).
    #[arg(long, global = true)]
    pub no_floor: bool,
    /// Pad the floor's start input by this many bytes (1,600 makes its started event as large
    /// as a Drift round's, whose input carries the definition): tells payload bytes' part in
    /// what a round costs Temporal. At most 1,000,000: Temporal refuses a payload over 2 MB.
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=1_000_000))]
    pub floor_input_bytes: u32,
    /// The floor's starts carry the runs list's search attributes, as a Drift run of `drift
    /// bench load` starts with (tenant, definition, version, waiting on its screen since when;
    /// the server must have them registered, as `drift dev`'s has): tells their part in what a
    /// round costs Temporal, which keeps them in each run's state.
    #[arg(long, global = true)]
    pub floor_search_attributes: bool,
    /// The gateways' process ids, comma-separated, for their memory (summed) (default: `drift
    /// dev`'s, from endpoints.json).
    #[arg(long, global = true, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Tenant of the API key (fanout publishes on that tenant's keys). Default: `drift dev`'s.
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// The gateway's Redis key prefix. Default: `drift dev`'s.
    #[arg(long, global = true)]
    pub key_prefix: Option<String>,
    /// Also write a markdown report and SVG charts into this folder.
    #[arg(long, global = true)]
    pub report: Option<PathBuf>,
    #[command(subcommand)]
    pub what: Option<BenchCmd>,
    /// Measured rounds (each: start bank_account to its first screen; resume refund's first
    /// screen to the next, which needs no activity).
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    #[command(flatten)]
    pub gateway: GatewayClientArgs,
}

/// The subscribers of `drift bench fanout`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Mixed,
    Sse,
    Ws,
}

/// How `drift bench fanout`'s subscribers connect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Connect {
    Waves,
    Burst,
    PerSecond(f64),
}

fn parse_connect(s: &str) -> Result<Connect, String> {
    match s {
        "waves" => Ok(Connect::Waves),
        "burst" => Ok(Connect::Burst),
        n => match n.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Connect::PerSecond(r)),
            _ => Err(format!(
                "{n:?}: expected waves, burst or connections per second (e.g. 1000)"
            )),
        },
    }
}

/// Benchmarks other than the sync round trips.
#[derive(Subcommand, Debug, Clone)]
pub enum BenchCmd {
    /// Simulation: refund simulated to its end (`POST /v3/definitions/refund/simulate`, the
    /// examples' answers and stubbed responses) against the same flow run for real (start and
    /// two answers through Temporal), and a looping flow failed at its step bound; `--rounds`
    /// each (the real runs: a quarter of them).
    Simulate,
    /// Live fan-out: N subscribers (SSE and WebSocket) over C workflows, states published at a
    /// fixed cadence through Drift's publish path; delivery, latency and memory per connection.
    Fanout {
        /// Subscriber counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        subscribers: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        workflows: usize,
        /// States published per workflow (the last one COMPLETED).
        #[arg(long, default_value_t = 10)]
        states: u64,
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Which live transport the subscribers use: half and half, or all one kind (to see
        /// each one's memory per connection).
        #[arg(long, value_enum, default_value_t = Transport::Mixed)]
        transport: Transport,
        /// Gateways the subscribers are spread over, in turn (comma-separated base URLs; the
        /// workflows are started on the first). Default: --url.
        #[arg(long, value_delimiter = ',')]
        gateways: Vec<String>,
        /// How the subscribers connect: `waves` (250 at a time, each wave once most of the
        /// last has its first state), `burst` (all at once: a reconnect storm, as after a
        /// gateway restart), or a number per second.
        #[arg(long, default_value = "waves", value_parser = parse_connect)]
        connect: Connect,
        /// Loopback source addresses the subscribers connect from, in turn (127.0.0.1 up to
        /// 127.0.0.N): a gateway holds at most --max-connections-per-peer from one address.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
        sources: u8,
        /// Followers per connection: SSE streams sharing one HTTP/2 connection (prior
        /// knowledge), as a browser's tabs share one to an origin, or workflows one WebSocket
        /// follows (each a different workflow: at most --workflows). 1: a connection each
        /// (SSE over HTTP/1.1). At most 200, the gateway's bound on both (hyper's concurrent
        /// streams, a socket's subscriptions).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
        per_connection: u16,
        /// Run as one of P bench processes (`DIR:P`): each opens its own followers of its own
        /// workflows, then waits in DIR until all P are ready before publishing, so that one
        /// process's open-file limit does not bound the followers (scripts/bench-followers.sh).
        #[arg(long, value_parser = parse_barrier)]
        barrier: Option<(std::path::PathBuf, usize)>,
        /// Write each run's figures and latency samples as JSON lines to this file (to merge
        /// several processes' runs).
        #[arg(long)]
        json_out: Option<std::path::PathBuf>,
    },
    /// Throughput under load: N callers each doing start → screen → answer → end back to
    /// back, first on the raw-SDK floor, then through the gateway, on the same Temporal and
    /// Redis; rounds/s, latency and CPU per round of each side, and the ratios. Serve the
    /// gateway with --rate-limit 0 (`drift dev --rate-limit 0`).
    Load {
        /// Concurrent callers, comma-separated (each count is a run of both sides).
        #[arg(long, value_delimiter = ',', default_value = "8,32")]
        concurrency: Vec<usize>,
        /// Measured seconds per side and count.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Unmeasured seconds before each.
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// Turns each side's measured seconds are cut into, the sides alternating (Temporal's
        /// cost per round drifts over a run: both sides meet the same server).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100))]
        turns: u64,
        /// How long each caller looks at a screen before answering it, in milliseconds, on
        /// every side (at most 60,000). At 0 an answer can reach Temporal while the workflow
        /// task that showed the screen is still finishing; Temporal then hands the next task
        /// back with that one's completion, a cheaper path than a person answering seconds
        /// later takes.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=60_000))]
        think_ms: u64,
        /// Print each side's measured time as it ends (`load: window floor 8 callers 1620
        /// rounds <from> <to>`, in seconds since the Unix epoch), to cut a profile taken with
        /// `perf record -k CLOCK_REALTIME` by side (scripts/bench-profile.sh).
        #[arg(long)]
        windows: bool,
        /// Also run the `engine` side: Drift's workflow and worker (at their default settings)
        /// in this process, started and answered over Temporal's client and waited on through
        /// the subscription hub, with no gateway, driven as the floor is. It splits Drift's
        /// distance to the floor into the engine's part and the gateway's.
        #[arg(long)]
        engine: bool,
    },
    /// Runs waiting on a screen: what each costs the worker that keeps it cached, for
    /// bank_account and a generated definition of `--screens` screens (30: 37 KB). Keep twice
    /// `--runs` under the worker's --worker-cached-workflows (1,000 by default).
    Cached {
        /// Runs of each definition, started 8 at a time and left on their first screen.
        #[arg(long, default_value_t = 400)]
        runs: usize,
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=500))]
        screens: u16,
    },
    /// Blocked sync requests: W concurrent starts whose first screen waits on a slow stand-in;
    /// all must be answered, on the gateway's fixed Redis connections.
    Waiters {
        #[arg(long, default_value_t = 10_000)]
        waiters: usize,
        /// How long the slow stand-in holds each first screen back, in milliseconds (at most
        /// 290 s). Every waiter keeps three sockets open (bench → gateway, worker → stand-in,
        /// and the stand-in's side); `scripts/bench-waiters.sh` runs each part in its own
        /// process so that 10,000 fit under one process's file limit.
        #[arg(long, default_value_t = 3_000)]
        delay_ms: u64,
        /// Starts sent per second (0: all at once). A 2-core Temporal dev server gets through
        /// about 40 of these workflows a second; a burst above that waits in the gateway.
        #[arg(long, default_value_t = 0)]
        ramp_per_sec: u64,
    },
}

fn parse_barrier(s: &str) -> Result<(std::path::PathBuf, usize), String> {
    let (dir, parties) = s
        .rsplit_once(':')
        .ok_or("--barrier is DIR:P (a directory and the number of processes)")?;
    let parties: usize = parties
        .parse()
        .map_err(|_| format!("--barrier: {parties:?} is not a number of processes"))?;
    if parties == 0 {
        return Err("--barrier: at least one process".into());
    }
    Ok((dir.into(), parties))
}

#[cfg(test)]
mod tests {
    use super::{BenchArgs, BenchCmd, parse_barrier};
    use clap::Parser;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        a: BenchArgs,
    }

    #[test]
    fn a_think_time_is_read_in_milliseconds_and_one_over_a_minute_is_refused_with_its_bound() {
        let think = |v: &str| {
            Bench::try_parse_from(["bench", "load", "--think-ms", v]).map(|b| match b.a.what {
                Some(BenchCmd::Load { think_ms, .. }) => think_ms,
                _ => unreachable!("load"),
            })
        };
        assert_eq!(think("150").unwrap(), 150);
        let refused = think("60001").unwrap_err().to_string();
        assert!(refused.contains("0..=60000"), "{refused}");
    }

    #[test]
    fn a_barrier_is_a_directory_and_a_number_of_processes_and_anything_else_is_refused_by_name() {
        assert_eq!(parse_barrier("/tmp/b:3"), Ok(("/tmp/b".into(), 3)));
        assert!(parse_barrier("/tmp/b").unwrap_err().contains("DIR:P"));
        assert!(parse_barrier("/tmp/b:x").unwrap_err().contains("not a number"));
        assert!(parse_barrier("/tmp/b:0").unwrap_err().contains("at least one"));
    }
}
