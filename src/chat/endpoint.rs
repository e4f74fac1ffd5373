//! What every platform's inbound HTTP endpoints share: the body limit, and how a request that is
//! not proven (401) or not understood (400) is refused, in a few words and a log line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Chat payloads are small; a message's worth of blocks in an interaction is the largest.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request was refused; the response says it in a few words.
pub struct Refusal(StatusCode, &'static str);

impl Refusal {
    /// A request not proven to come from `platform` (unsigned, wrongly signed, stale, replayed).
    pub fn unauthorized(platform: &'static str, reason: &'static str) -> Refusal {
        tracing::info!(platform, reason, "Refused an unproven chat request");
        Refusal(StatusCode::UNAUTHORIZED, reason)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// A proven request whose body `platform`'s endpoint cannot read.
pub fn bad_request(platform: &'static str, reason: String) -> Response {
    tracing::info!(platform, reason, "Refused a malformed chat request");
    (StatusCode::BAD_REQUEST, reason).into_response()
}
