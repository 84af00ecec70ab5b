//! snode: a service node for a Session-style private messenger network.
//!
//! The library holds everything; `main.rs` only parses the command line and calls in here.
//! See `ARCHITECTURE.md` for the code map and the invariants between these modules.

pub mod allocator;
pub mod api;
pub mod bench;
pub mod bencode;
pub mod blocking;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod directory;
pub mod error;
pub mod expiry_log;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod network;
pub mod node;
pub mod notify;
pub mod onion;
pub mod peer;
pub mod quic;
pub mod reachability;
pub mod replication;
pub mod rpc;
pub mod sign;
pub mod status;
pub mod store;
pub mod swarm;
pub mod testnet;
pub mod tls;
pub mod transport;
