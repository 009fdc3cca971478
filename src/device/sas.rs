//! Interactive verification with another of the user's devices by comparing seven emoji (SAS,
//! `m.sas.v1`), over to-device messages. The machine runs the protocol; this module drives it
//! one sync at a time so that the caller (a terminal) can show the emoji and ask the person.
//!
//! mxkeys either asks (a request to one device, or to all of the user's devices) and starts the
//! SAS once the other side is ready, or accepts a request another device sent and takes the SAS
//! it starts (starting one itself if the other side does not within a few seconds). A mismatch,
//! a cancel by either side or a timeout ends it with nothing trusted.

use std::time::{Duration, Instant};

use matrix_sdk_crypto::types::requests::{OutgoingRequest, OutgoingVerificationRequest};
use matrix_sdk_crypto::{Sas, Verification, VerificationRequest};
use ruma::events::key::verification::VerificationMethod;
use ruma::events::key::verification::cancel::CancelCode;

use super::{Device, DeviceError, QUERY_WAIT, sync, transport, verify};
use crate::client::Client;

/// How long an accepted request waits for the other side to start the SAS before mxkeys
/// starts it.
const THEIR_START_GRACE: Duration = Duration::from_secs(5);

/// Where the verification stands after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Waiting for the other device.
    Waiting,
    /// The emoji to compare (symbol, name), and the other device.
    Compare {
        /// The seven emoji.
        emoji: Vec<(String, String)>,
        /// The other device's id.
        device_id: String,
    },
    /// Both sides confirmed: the other device is verified, and it verified this one.
    Done {
        /// The other device's id.
        device_id: String,
    },
    /// Cancelled (by either side), with the reason.
    Cancelled(String),
}

/// One verification under way.
pub struct Flow<'d> {
    dev: &'d Device,
    request: VerificationRequest,
    sas: Option<Sas>,
    ready_since: Option<Instant>,
    confirmed: bool,
}

impl std::fmt::Debug for Flow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("flow_id", &self.request.flow_id().as_str())
            .field("sas", &self.sas.is_some())
            .finish_non_exhaustive()
    }
}

async fn send_verification(
    dev: &Device,
    client: &Client,
    r: OutgoingVerificationRequest,
) -> Result<(), DeviceError> {
    let r: OutgoingRequest = r.into();
    transport::send_one(dev.machine(), client, r.request_id(), r.request()).await
}

fn cancel_reason(r: &VerificationRequest, s: Option<&Sas>) -> String {
    let info = s.and_then(|s| s.cancel_info()).or_else(|| r.cancel_info());
    match info {
        Some(i) => format!("{} ({})", i.reason(), i.cancel_code()),
        None => "cancelled".into(),
    }
}

impl<'d> Flow<'d> {
    /// Accept a pending request from another own device (`device_id`, or any), after one
    /// sync that waits up to `wait_ms` on the server; `None` when there is none.
    pub fn accept_incoming(
        dev: &'d Device,
        client: &Client,
        device_id: Option<&str>,
        wait_ms: u64,
    ) -> Result<Option<Flow<'d>>, DeviceError> {
        sync::once(dev, client, wait_ms)?;
        let m = dev.machine();
        let found = m
            .get_verification_requests(m.user_id())
            .into_iter()
            .find(|r| {
                !r.we_started()
                    && !r.is_done()
                    && !r.is_cancelled()
                    && device_id
                        .is_none_or(|d| r.other_device_id().is_some_and(|o| o.as_str() == d))
            });
        let Some(request) = found else {
            return Ok(None);
        };
        dev.block_on(async {
            if let Some(r) = request.accept_with_methods(vec![VerificationMethod::SasV1]) {
                send_verification(dev, client, r).await?;
            }
            Ok::<_, DeviceError>(())
        })?;
        Ok(Some(Flow {
            dev,
            request,
            sas: None,
            ready_since: None,
            confirmed: false,
        }))
    }

    /// Ask own device `device_id` (or all of the user's other devices) to verify.
    pub fn ask(
        dev: &'d Device,
        client: &Client,
        device_id: Option<&str>,
    ) -> Result<Flow<'d>, DeviceError> {
        let m = dev.machine();
        let request = dev.block_on(async {
            m.update_tracked_users([m.user_id()]).await?;
            verify::query_own(dev, client).await?;
            let (request, out) = match device_id {
                Some(d) => {
                    let device = m
                        .get_device(m.user_id(), &ruma::OwnedDeviceId::from(d), Some(QUERY_WAIT))
                        .await?
                        .ok_or_else(|| {
                            DeviceError::Protocol(format!(
                                "the account has no device {d} (see the device list in your client)"
                            ))
                        })?;
                    device.request_verification_with_methods(vec![VerificationMethod::SasV1])
                }
                None => {
                    let own = m
                        .get_identity(m.user_id(), Some(QUERY_WAIT))
                        .await?
                        .and_then(|i| i.own())
                        .ok_or_else(|| {
                            DeviceError::Protocol(
                                "the account has no cross-signing identity to ask all devices through; name the device with --device".into(),
                            )
                        })?;
                    own.request_verification_with_methods(vec![VerificationMethod::SasV1])
                        .await?
                }
            };
            send_verification(dev, client, out).await?;
            Ok::<_, DeviceError>(request)
        })?;
        Ok(Flow {
            dev,
            request,
            sas: None,
            ready_since: None,
            confirmed: false,
        })
    }

    /// Sync once (waiting up to `wait_ms` on the server) and move the protocol on.
    pub fn poll(&mut self, client: &Client, wait_ms: u64) -> Result<Step, DeviceError> {
        sync::once(self.dev, client, wait_ms)?;
        let dev = self.dev;
        let m = dev.machine();
        if self.request.is_cancelled() || self.sas.as_ref().is_some_and(|s| s.is_cancelled()) {
            return Ok(Step::Cancelled(cancel_reason(
                &self.request,
                self.sas.as_ref(),
            )));
        }
        if self.sas.is_none() {
            if let Some(Verification::SasV1(s)) =
                m.get_verification(m.user_id(), self.request.flow_id().as_str())
            {
                let s = *s;
                if !s.we_started() {
                    dev.block_on(async {
                        if let Some(r) = s.accept() {
                            send_verification(dev, client, r).await?;
                        }
                        Ok::<_, DeviceError>(())
                    })?;
                }
                self.sas = Some(s);
            } else if self.request.is_ready() {
                let since = *self.ready_since.get_or_insert_with(Instant::now);
                if self.request.we_started() || since.elapsed() >= THEIR_START_GRACE {
                    let started = dev.block_on(async {
                        match self.request.start_sas().await? {
                            Some((s, out)) => {
                                send_verification(dev, client, out).await?;
                                Ok::<_, DeviceError>(Some(s))
                            }
                            None => Ok(None),
                        }
                    })?;
                    self.sas = started;
                }
            }
        }
        let Some(sas) = &self.sas else {
            return Ok(Step::Waiting);
        };
        let device_id = sas.other_device_id().to_string();
        if sas.is_done() {
            return Ok(Step::Done { device_id });
        }
        if !self.confirmed && sas.can_be_presented() {
            if let Some(e) = sas.emoji() {
                return Ok(Step::Compare {
                    emoji: e
                        .iter()
                        .map(|e| (e.symbol.to_string(), e.description.to_string()))
                        .collect(),
                    device_id,
                });
            }
            // A device that offers no emoji: nothing mxkeys can show.
            self.cancel(client)?;
            return Ok(Step::Cancelled(
                "the other device offers no emoji comparison".into(),
            ));
        }
        Ok(Step::Waiting)
    }

    /// The person saw the same emoji on both screens.
    pub fn confirm(&mut self, client: &Client) -> Result<(), DeviceError> {
        let Some(sas) = self.sas.clone() else {
            return Err(DeviceError::Protocol("no emoji were shown yet".into()));
        };
        let dev = self.dev;
        dev.block_on(async {
            let (reqs, signature) = sas.confirm().await?;
            for r in reqs {
                send_verification(dev, client, r).await?;
            }
            if let Some(s) = signature {
                let txn = ruma::TransactionId::new();
                transport::send_one(
                    dev.machine(),
                    client,
                    &txn,
                    &matrix_sdk_crypto::types::requests::AnyOutgoingRequest::SignatureUpload(s),
                )
                .await?;
            }
            Ok::<_, DeviceError>(())
        })?;
        self.confirmed = true;
        Ok(())
    }

    /// The emoji differ: cancel as a mismatch; nothing is trusted.
    pub fn mismatch(&mut self, client: &Client) -> Result<(), DeviceError> {
        self.cancel_with(client, CancelCode::MismatchedSas)
    }

    /// Give up (timeout, Ctrl-C): cancel; nothing is trusted.
    pub fn cancel(&mut self, client: &Client) -> Result<(), DeviceError> {
        self.cancel_with(client, CancelCode::User)
    }

    fn cancel_with(&mut self, client: &Client, code: CancelCode) -> Result<(), DeviceError> {
        let dev = self.dev;
        let out = match &self.sas {
            Some(s) => s.cancel_with_code(code),
            None => self.request.cancel(),
        };
        if let Some(r) = out {
            dev.block_on(send_verification(dev, client, r))?;
        }
        dev.flush(client)?;
        Ok(())
    }
}
