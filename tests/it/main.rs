//! Integration tests against a real Temporal dev server and a real redis-server.

mod auth;
mod bench;
mod bus;
mod cluster;
mod contract;
mod definitions;
mod dev;
mod edge;
mod egress;
mod faults;
mod flows;
mod helpers;
mod histories;
mod hostile;
mod limits;
mod links;
mod live;
mod runs;
mod shutdown;
mod stuck;
mod traces;
mod webhooks;
