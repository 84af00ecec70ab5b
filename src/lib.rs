//! snode: a service node for a Session-style private messenger network.
//!
//! The library holds everything; `main.rs` only parses the command line and calls in here.
//! See `ARCHITECTURE.md` for the code map and the invariants between these modules.

pub mod message;
pub mod keys;
pub mod tls;
pub mod sign;
pub mod swarm;
pub mod store;
pub mod rpc;
pub mod onion;
pub mod metrics;
pub mod config;
pub mod peer;
pub mod replication;
pub mod network;
pub mod reachability;
pub mod status;
pub mod notify;
pub mod api;
pub mod node;
pub mod testnet;
pub mod bench;
pub mod cli;
pub mod directory;
pub mod client;
