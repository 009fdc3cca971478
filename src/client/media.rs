//! Media downloads: `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}` (the
//! authenticated media endpoint, with the access token), falling back to the legacy
//! `GET /_matrix/media/v3/download/...` when the server does not know the v1 endpoint (an
//! `M_UNRECOGNIZED` answer, or a 404/405 without a Matrix error code). A `M_NOT_FOUND` from
//! the v1 endpoint is final: the media is not there. The body is bounded by a cap the caller
//! gives; a longer one is refused, never truncated.

use super::{Call, Client, ClientError, Method, RetryReason, Step, classify_transport, encode};

/// Default cap on one media download.
pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 100 * 1024 * 1024;

/// Does this error say the endpoint itself is unknown (rather than the media)?
fn endpoint_unknown(e: &ClientError) -> bool {
    match e {
        ClientError::NotFound { errcode, .. } => {
            errcode == "M_UNRECOGNIZED" || errcode == "no errcode"
        }
        ClientError::Rejected {
            status, errcode, ..
        } => errcode == "M_UNRECOGNIZED" || (*status == 405 && errcode == "no errcode"),
        _ => false,
    }
}

impl Client {
    /// Download `mxc://server_name/media_id`, at most `max_bytes` bytes.
    pub fn download_media(
        &self,
        server_name: &str,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let tail = format!("{}/{}", encode(server_name), encode(media_id));
        let v1 = format!("{}/_matrix/client/v1/media/download/{tail}", self.base);
        match self.download(&v1, max_bytes) {
            Err(e) if endpoint_unknown(&e) => {
                log::debug!(
                    "the authenticated media endpoint is unknown here; using the legacy one"
                );
                let v3 = format!("{}/_matrix/media/v3/download/{tail}", self.base);
                self.download(&v3, max_bytes)
            }
            r => r,
        }
    }

    fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, ClientError> {
        let call = Call {
            method: Method::Get,
            url,
            body: None,
            what: "the media",
            idempotent: true,
            small_body: false,
        };
        self.request(&call, |mut resp, t| {
            match resp.body_mut().with_config().limit(max_bytes).read_to_vec() {
                Ok(bytes) => Step::Done(bytes),
                Err(ureq::Error::BodyExceedsLimit(n)) => Step::Fail(ClientError::BadResponse {
                    what: "the media".into(),
                    reason: format!("it is larger than {n} bytes (raise --max-media-bytes)"),
                }),
                Err(e) => match classify_transport(&e, t) {
                    Ok(reason @ RetryReason::TimedOut { .. }) => Step::Retry(reason),
                    Ok(reason) => Step::Retry(RetryReason::Connection {
                        detail: format!("reading the media: {reason}"),
                    }),
                    Err(fatal) => Step::Retry(RetryReason::Connection {
                        detail: format!("reading the media: {fatal}"),
                    }),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_errors_fall_back() {
        let nf = |errcode: &str| ClientError::NotFound {
            what: "the media".into(),
            errcode: errcode.into(),
            message: String::new(),
        };
        assert!(endpoint_unknown(&nf("M_UNRECOGNIZED")));
        assert!(endpoint_unknown(&nf("no errcode")));
        assert!(!endpoint_unknown(&nf("M_NOT_FOUND")));
        let rej = |status, errcode: &str| ClientError::Rejected {
            status,
            errcode: errcode.into(),
            message: String::new(),
        };
        assert!(endpoint_unknown(&rej(400, "M_UNRECOGNIZED")));
        assert!(endpoint_unknown(&rej(405, "no errcode")));
        assert!(!endpoint_unknown(&rej(403, "M_FORBIDDEN")));
        assert!(!endpoint_unknown(&ClientError::Interrupted));
    }
}
