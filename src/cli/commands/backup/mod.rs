//! `mxkeys backup ...`: one module per verb.

pub mod create;
pub mod delete;
pub mod download;
pub mod info;
pub mod status;
pub mod upload;

use serde_json::Value;

/// The user's cross-signing master key as published on the server (`/keys/query`).
pub fn published_master_key(query: &Value, user_id: &str) -> Option<String> {
    let keys = query
        .get("master_keys")?
        .get(user_id)?
        .get("keys")?
        .as_object()?;
    keys.values().find_map(|v| v.as_str().map(str::to_string))
}

/// A device's Ed25519 key as published on the server.
pub fn device_ed25519(query: &Value, user_id: &str, device_id: &str) -> Option<String> {
    query
        .get("device_keys")?
        .get(user_id)?
        .get(device_id)?
        .get("keys")?
        .get(format!("ed25519:{device_id}"))?
        .as_str()
        .map(str::to_string)
}
