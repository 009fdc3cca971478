//! Sending what the OlmMachine asks for. matrix-sdk-crypto is sans-I/O: it hands out requests
//! (`outgoing_requests`) as ruma types and takes the responses back (`mark_request_as_sent`).
//! Each request is turned into method, path and body by ruma itself
//! (`OutgoingRequest::try_into_http_request`), sent by mxkeys' blocking client (its retry
//! policy, timeouts and token handling), and the body that comes back is parsed by ruma
//! (`IncomingResponse::try_from_http_response`). No request body is written by hand here.

use std::borrow::Cow;

use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, OutgoingRequest};
use matrix_sdk_crypto::{OlmMachine, types::requests::ToDeviceRequest};
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::keys::{claim_keys, get_keys, upload_keys, upload_signatures};
use ruma::api::client::to_device::send_event_to_device;
use ruma::api::path_builder::PathBuilder;
use ruma::api::{
    IncomingResponse, MatrixVersion, OutgoingRequest as RumaRequest, SupportedVersions,
};

use super::DeviceError;
use crate::client::Client;

/// The versions ruma picks paths for: v1.1 and later use `/v3/` paths.
fn versions() -> SupportedVersions {
    SupportedVersions {
        versions: [MatrixVersion::V1_1].into_iter().collect(),
        features: Default::default(),
    }
}

/// Method, path-and-query and body of a ruma request, as ruma serialises it.
///
/// ruma adds an `Authorization` header from the token it is given; the header is dropped here
/// and the client adds the real one, so ruma gets a placeholder, never the token.
fn http_parts<R>(req: R) -> Result<(String, String, Vec<u8>), DeviceError>
where
    R: RumaRequest,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    for<'a> R::PathBuilder: PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
{
    let http = req
        .try_into_http_request::<Vec<u8>>(
            "http://placeholder",
            SendAccessToken::Always("placeholder"),
            Cow::Owned(versions()),
        )
        .map_err(|e| DeviceError::Protocol(format!("building a request: {e}")))?;
    let path = http
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    Ok((http.method().as_str().to_string(), path, http.into_body()))
}

/// Parse a 2xx body as the response type of `R`.
fn parse<R: IncomingResponse>(body: Vec<u8>, what: &str) -> Result<R, DeviceError> {
    let resp = ruma::exports::http::Response::builder()
        .status(200)
        .body(body)
        .map_err(|e| DeviceError::Protocol(format!("{what}: {e}")))?;
    R::try_from_http_response(resp)
        .map_err(|e| DeviceError::Protocol(format!("the homeserver's answer to {what}: {e}")))
}

/// Send one ruma request and parse its response.
fn roundtrip<R>(
    client: &Client,
    req: R,
    what: &str,
    idempotent: bool,
) -> Result<R::IncomingResponse, DeviceError>
where
    R: RumaRequest,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    for<'a> R::PathBuilder: PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
{
    let (method, path, body) = http_parts(req)?;
    let bytes = client.api_call(&method, &path, Some(&body), what, idempotent)?;
    parse::<R::IncomingResponse>(bytes, what)
}

/// The ruma form of one of the machine's to-device requests, under transaction id `txn`.
fn to_device_request(
    r: &ToDeviceRequest,
    txn: ruma::OwnedTransactionId,
) -> send_event_to_device::v3::Request {
    send_event_to_device::v3::Request::new_raw(r.event_type.clone(), txn, r.messages.clone())
}

/// Send one of the machine's requests and hand the response back to it.
pub async fn send_one(
    machine: &OlmMachine,
    client: &Client,
    request_id: &ruma::TransactionId,
    request: &AnyOutgoingRequest,
) -> Result<(), DeviceError> {
    match request {
        AnyOutgoingRequest::KeysUpload(r) => {
            let resp: upload_keys::v3::Response =
                roundtrip(client, r.clone(), "uploading the device's keys", true)?;
            machine.mark_request_as_sent(request_id, &resp).await?;
        }
        AnyOutgoingRequest::KeysQuery(r) => {
            let mut q = get_keys::v3::Request::new();
            q.device_keys = r.device_keys.clone();
            q.timeout = r.timeout;
            let resp: get_keys::v3::Response = roundtrip(client, q, "the devices' keys", true)?;
            machine.mark_request_as_sent(request_id, &resp).await?;
        }
        AnyOutgoingRequest::KeysClaim(r) => {
            let resp: claim_keys::v3::Response =
                roundtrip(client, r.clone(), "claiming one-time keys", false)?;
            machine.mark_request_as_sent(request_id, &resp).await?;
        }
        AnyOutgoingRequest::ToDeviceRequest(r) => {
            // The transaction id makes a repeat harmless.
            let resp: send_event_to_device::v3::Response = roundtrip(
                client,
                to_device_request(r, r.txn_id.clone()),
                "sending to-device messages",
                true,
            )?;
            machine.mark_request_as_sent(request_id, &resp).await?;
        }
        AnyOutgoingRequest::SignatureUpload(r) => {
            let resp: upload_signatures::v3::Response =
                roundtrip(client, r.clone(), "uploading signatures", true)?;
            if !resp.failures.is_empty() {
                let ids: Vec<String> = resp.failures.keys().map(|u| u.to_string()).collect();
                return Err(DeviceError::Protocol(format!(
                    "the homeserver refused signatures for {}",
                    ids.join(", ")
                )));
            }
            machine.mark_request_as_sent(request_id, &resp).await?;
        }
        AnyOutgoingRequest::RoomMessage(_) => {
            // In-room verification is never started by mxkeys; nothing to send.
            log::debug!("ignoring an in-room message request");
        }
    }
    Ok(())
}

/// Like [`send_one`], but a to-device request goes out under a new transaction id (for a
/// request the machine hands out again with the id of one already sent).
pub async fn send_fresh(
    machine: &OlmMachine,
    client: &Client,
    request_id: &ruma::TransactionId,
    request: &AnyOutgoingRequest,
) -> Result<(), DeviceError> {
    let AnyOutgoingRequest::ToDeviceRequest(r) = request else {
        return send_one(machine, client, request_id, request).await;
    };
    let fresh = to_device_request(r, ruma::TransactionId::new());
    let resp: send_event_to_device::v3::Response =
        roundtrip(client, fresh, "sending to-device messages", true)?;
    machine.mark_request_as_sent(request_id, &resp).await?;
    Ok(())
}

/// Send every request the machine has queued, until it has none left (answers may queue
/// more: a key upload after a query, a claim after new devices). Returns how many were sent.
pub async fn flush(machine: &OlmMachine, client: &Client) -> Result<usize, DeviceError> {
    let mut sent = 0;
    for _round in 0..16 {
        let reqs: Vec<OutgoingRequest> = machine.outgoing_requests().await?;
        let reqs: Vec<OutgoingRequest> = reqs
            .into_iter()
            .filter(|r| !matches!(r.request(), AnyOutgoingRequest::RoomMessage(_)))
            .collect();
        if reqs.is_empty() {
            return Ok(sent);
        }
        for r in &reqs {
            send_one(machine, client, r.request_id(), r.request()).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruma_builds_the_v3_paths_and_no_token_leaks() {
        let mut q = get_keys::v3::Request::new();
        q.device_keys
            .insert(ruma::OwnedUserId::try_from("@a:localhost").unwrap(), vec![]);
        let (m, path, body) = http_parts(q).unwrap();
        assert_eq!(m, "POST");
        assert_eq!(path, "/_matrix/client/v3/keys/query");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["device_keys"]["@a:localhost"], serde_json::json!([]));
        assert!(!String::from_utf8_lossy(&body).contains("placeholder"));
    }

    #[test]
    fn to_device_paths_carry_type_and_txn() {
        let r = send_event_to_device::v3::Request::new_raw(
            "m.room_key_request".into(),
            "txn1".into(),
            Default::default(),
        );
        let (m, path, _) = http_parts(r).unwrap();
        assert_eq!(m, "PUT");
        assert_eq!(
            path,
            "/_matrix/client/v3/sendToDevice/m.room_key_request/txn1"
        );
    }
}
