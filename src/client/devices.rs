//! The endpoints a device needs beyond keys and rooms: any request that matrix-sdk-crypto hands
//! out (sent as the bytes ruma made of it, see `crate::device::transport`), `/sync` for
//! to-device messages, the account's dehydrated device (MSC3814) and its queued messages, and
//! deleting a device with the account's password (user-interactive auth).
//!
//! Every call goes through the client's retry policy. Bodies are capped; a `/sync` response is
//! cut down by its filter to to-device messages and device-list changes, so the cap is generous.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::error::ClientError;
use super::{Client, MAX_SMALL_BODY, Method, encode};
use crate::secret::Passphrase;

/// Largest `/sync` or `/keys/query` response read (to-device messages only, but a busy device
/// may have hundreds queued; Synapse sends at most 100 per sync).
pub const MAX_DEVICE_BODY: u64 = 32 * 1024 * 1024;

/// The unstable prefix of MSC3814 (dehydrated devices), as Synapse serves it.
pub const MSC3814: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1";

/// The `/sync` filter of a device: no room data, no presence, no account data; to-device
/// messages, device lists and one-time-key counts always come.
pub const DEVICE_SYNC_FILTER: &str = r#"{"room":{"rooms":[],"account_data":{"not_types":["*"]}},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}"#;

/// The account's dehydrated device, as the server keeps it.
#[derive(Debug, Deserialize, Serialize)]
pub struct DehydratedDevice {
    /// Its device id.
    pub device_id: String,
    /// Its sealed data (`algorithm`, `device_pickle`, ...), opened by the dehydration key.
    pub device_data: Value,
}

/// One page of the dehydrated device's queued to-device messages.
#[derive(Debug, Deserialize, Serialize)]
pub struct DehydratedEvents {
    /// The messages.
    #[serde(default)]
    pub events: Vec<Value>,
    /// Where the next page starts; `None` on the last page.
    #[serde(default)]
    pub next_batch: Option<String>,
}

fn method_of(m: &str) -> Result<Method, ClientError> {
    Ok(match m {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        other => {
            return Err(ClientError::BadUrl(format!(
                "unsupported HTTP method {other}"
            )));
        }
    })
}

impl Client {
    /// Send a request given as method, path and query (from `/_matrix/...`) and JSON body;
    /// return the 2xx body, checked to be JSON. For requests that another library builds
    /// (matrix-sdk-crypto through ruma): `idempotent` says whether repeating it is harmless.
    pub fn api_call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
        what: &str,
        idempotent: bool,
    ) -> Result<Vec<u8>, ClientError> {
        if !path_and_query.starts_with("/_matrix/") {
            return Err(ClientError::BadUrl(format!(
                "not a Matrix API path: {}",
                crate::session::sanitize(path_and_query)
            )));
        }
        let url = format!("{}{path_and_query}", self.base);
        let v: Box<serde_json::value::RawValue> = self.json_limited(
            method_of(method)?,
            &url,
            body,
            what,
            idempotent,
            MAX_DEVICE_BODY,
        )?;
        Ok(v.get().as_bytes().to_vec())
    }

    /// One `GET /sync` with the device filter: waits up to `timeout_ms` on the server for
    /// something new. The raw response (to-device events, device lists, key counts).
    pub fn sync_device(&self, since: Option<&str>, timeout_ms: u64) -> Result<Value, ClientError> {
        let mut url = format!(
            "{}?timeout={timeout_ms}&filter={}&set_presence=offline",
            self.url("sync"),
            encode(DEVICE_SYNC_FILTER)
        );
        if let Some(s) = since {
            url.push_str("&since=");
            url.push_str(&encode(s));
        }
        self.json_limited(Method::Get, &url, None, "sync", true, MAX_DEVICE_BODY)
    }

    /// The account's dehydrated device (`None` when it has none).
    pub fn dehydrated_device(&self) -> Result<Option<DehydratedDevice>, ClientError> {
        let url = format!("{}{MSC3814}/dehydrated_device", self.base);
        match self.json(Method::Get, &url, None, "the dehydrated device", true) {
            Ok(d) => Ok(Some(d)),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of the messages queued for dehydrated device `device_id`, from `from`. Synapse
    /// serves `GET ?from=`; older servers only the POST with `next_batch` in the body, tried
    /// when the GET is not known.
    pub fn dehydrated_events(
        &self,
        device_id: &str,
        from: Option<&str>,
    ) -> Result<DehydratedEvents, ClientError> {
        let path = format!(
            "{}{MSC3814}/dehydrated_device/{}/events",
            self.base,
            encode(device_id)
        );
        let mut url = path.clone();
        if let Some(f) = from {
            url.push_str("?from=");
            url.push_str(&encode(f));
        }
        let what = "the dehydrated device's messages";
        match self.json_limited(Method::Get, &url, None, what, true, MAX_DEVICE_BODY) {
            Err(ClientError::NotFound { errcode, .. } | ClientError::Rejected { errcode, .. })
                if errcode == "M_UNRECOGNIZED" =>
            {
                let body = match from {
                    Some(f) => json!({ "next_batch": f }),
                    None => json!({}),
                }
                .to_string();
                self.json_limited(
                    Method::Post,
                    &path,
                    Some(body.as_bytes()),
                    what,
                    true,
                    MAX_DEVICE_BODY,
                )
            }
            other => other,
        }
    }

    /// `POST /delete_devices` for one device with the account's password (user-interactive
    /// auth in one step: Synapse accepts the password stage on the first request).
    pub fn delete_device(
        &self,
        device_id: &str,
        user_id: &str,
        password: &Passphrase,
    ) -> Result<(), ClientError> {
        let pw = std::str::from_utf8(password.expose_secret())
            .map_err(|_| ClientError::BadUrl("the password is not UTF-8".into()))?;
        let body = Zeroizing::new(
            json!({
                "devices": [device_id],
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user_id},
                    "password": pw,
                }
            })
            .to_string()
            .into_bytes(),
        );
        let url = self.url("delete_devices");
        let _: Value = self.json_limited(
            Method::Post,
            &url,
            Some(&body),
            "deleting the device",
            true,
            MAX_SMALL_BODY,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_json_and_drops_rooms() {
        let v: Value = serde_json::from_str(DEVICE_SYNC_FILTER).unwrap();
        assert_eq!(v["room"]["rooms"], json!([]));
        assert_eq!(v["presence"]["not_types"], json!(["*"]));
    }

    #[test]
    fn only_matrix_paths_are_sent() {
        let c = Client::new("http://127.0.0.1:9", None, Default::default()).unwrap();
        assert!(matches!(
            c.api_call("GET", "http://evil/x", None, "x", true),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            c.api_call("PATCH", "/_matrix/client/v3/x", None, "x", true),
            Err(ClientError::BadUrl(_))
        ));
    }
}
