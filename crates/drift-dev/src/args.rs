//! `drift dev`'s command line: the gateway's and the worker's, in one process.

use clap::Args;
use drift_server::config::{Common, GatewayArgs};

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}
