//! The network directory: the stand-in for oxend's service-node list.
//!
//! This network has no blockchain, so membership comes from here. Nodes register with a signed
//! announcement (`announce`); the registry (`state`) assigns swarms with oxend's rules
//! (`assign`, drawing from `rng`), makes a new `height`/`block_hash` on every membership
//! change, records reachability reports and decommissions nodes that stay unreachable; it is
//! saved as JSON after every change (`persist`). `server` serves it over HTTP with oxend's
//! JSON-RPC shape (`rpc`), and `client` is the node side of all of it.
//!
//! Who may be listed is decided here too: admission (an allow-list unless `--open`), public
//! addresses only (`addr`), one active node per `IP:port`, a size bound, two distinct reporters
//! to bring a node back (`state`), and rate limits on the write routes (`limit`).
//!
//! Pure parts (`rng`, `assign`, `state`, `announce`, `rpc`, `addr`, `limit`) do no I/O and
//! take time as a parameter; only `persist`, `server` and `client` touch disk or sockets.

pub mod addr;
pub mod announce;
pub mod assign;
pub mod client;
pub mod limit;
pub mod persist;
pub mod rng;
pub mod rpc;
pub mod server;
pub mod state;

pub use announce::{SignedAnnouncement, SignedReport, sign_announcement, sign_report};
pub use client::{DirectoryClient, DirectoryClientError, Registration};
pub use limit::{DirectoryLimits, Rate};
pub use server::{DirectoryConfig, DirectoryError, DirectoryHandle, serve};
pub use state::{Admission, BadAllowList, Policy, Registry};
