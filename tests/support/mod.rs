//! Support for the real-homeserver integration suite (`tests/homeserver.rs`): a Synapse
//! started by `scripts/test-homeserver.sh`, users registered through its shared-secret API,
//! raw client-server API calls, an isolated environment for the `mxkeys` binary, a
//! fault-injecting HTTP proxy, and an independent implementation of the backup cipher.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod cli;
pub mod crypto;
pub mod fault_proxy;
pub mod synapse;
