//! Discord's HTTP interactions endpoint: `POST /discord/interactions`. Every request is
//! verified first — `X-Signature-Ed25519` is the application's Ed25519 signature of
//! `X-Signature-Timestamp` followed by the raw body, checked by serenity's
//! [`Verifier`](serenity::interactions_endpoint::Verifier); and the timestamp must be within
//! 5 minutes of now, which serenity does not check, so a replayed request is refused here — and a
//! request that fails gets 401 and does nothing. Discord sends deliberately bad signatures to
//! check this, and drops the endpoint of an app that accepts them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serenity::interactions_endpoint::Verifier;

use super::DiscordAdapter;
use super::inbound::{Answer, Responder, ephemeral_text, parse};
use crate::chat::endpoint::{MAX_BODY, Refusal, bad_request};
use crate::chat::platform::ChatHandler;
use crate::runbook::Catalogue;

/// How far a request's timestamp may be from now, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
#[derive(Clone)]
struct DiscordHttp {
    responder: Responder,
    key: Verifier,
}

/// Reads the application's public key (64 hex characters). Not serenity's `Verifier::new`, which
/// panics on a bad key: a bad key is a configuration error with a message.
pub fn public_key(hex_key: &str) -> anyhow::Result<Verifier> {
    let bytes: [u8; 32] =
        hex::decode(hex_key.trim()).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(|| {
            anyhow::anyhow!("discord.public_key must be 64 hex characters (the application's public key)")
        })?;
    Verifier::try_new(bytes).map_err(|_| anyhow::anyhow!("discord.public_key is not a valid Ed25519 public key"))
}

/// The endpoint, answering with `adapter`'s rendering and handing events to `handler`.
pub fn routes(
    handler: Arc<dyn ChatHandler>,
    adapter: Arc<DiscordAdapter>,
    catalogue: Arc<Catalogue>,
    key: Verifier,
) -> Router {
    let state = DiscordHttp { responder: Responder::new(handler, adapter, catalogue), key };
    Router::new()
        .route("/discord/interactions", post(interactions))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Checks a request's signature (serenity's [`Verifier`]) and its age (ours) against `key` at
/// `now` (seconds since the epoch).
pub fn verify(key: &Verifier, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let timestamp = header("x-signature-timestamp").ok_or("missing X-Signature-Timestamp")?;
    let signature = header("x-signature-ed25519").ok_or("missing X-Signature-Ed25519")?;
    if signature.len() != 128 || !signature.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err("X-Signature-Ed25519 is not 64 hex bytes");
    }
    key.verify(signature, timestamp, body).map_err(|()| "invalid signature")?;
    // Checked after the signature, so the age of a forged timestamp says nothing.
    let sent: u64 = timestamp.parse().map_err(|_| "X-Signature-Timestamp is not a number")?;
    if sent.abs_diff(now) > MAX_CLOCK_SKEW.as_secs() {
        return Err("stale or future timestamp");
    }
    Ok(())
}

async fn interactions(State(state): State<DiscordHttp>, headers: HeaderMap, body: Bytes) -> Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    if let Err(reason) = verify(&state.key, &headers, &body, now) {
        return Refusal::unauthorized("discord", reason).into_response();
    }
    let interaction = match parse(&body) {
        Ok(interaction) => interaction,
        Err(error) => return bad_request("discord", error),
    };
    match state.responder.answer(&interaction).await {
        Ok(Answer::Respond(response)) => axum::Json(response).into_response(),
        Ok(Answer::Repeated) => axum::Json(ephemeral_text("This was already handled.")).into_response(),
        Err(reason) => bad_request("discord", reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, timestamp: &str, body: &[u8]) -> HeaderMap {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let mut headers = HeaderMap::new();
        headers.insert("x-signature-timestamp", HeaderValue::from_str(timestamp).unwrap());
        headers
            .insert("x-signature-ed25519", HeaderValue::from_str(&hex::encode(key.sign(&message).to_bytes())).unwrap());
        headers
    }

    fn verifier(key: &SigningKey) -> Verifier {
        public_key(&hex::encode(key.verifying_key().to_bytes())).unwrap()
    }

    /// Our test signatures (ed25519-dalek, as the fake Discord signs) pass serenity's Verifier.
    #[test]
    fn signatures_and_their_age_are_checked() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = verifier(&key);
        let body = br#"{"type":1}"#;
        let now = 1_800_000_000;
        assert_eq!(verify(&public, &signed(&key, "1800000000", body), body, now), Ok(()));
        assert_eq!(verify(&public, &signed(&key, "1799999701", body), body, now), Ok(()));
        assert_eq!(verify(&public, &signed(&key, "1799999699", body), body, now), Err("stale or future timestamp"));
        assert_eq!(verify(&public, &signed(&key, "1800000301", body), body, now), Err("stale or future timestamp"));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(verify(&public, &signed(&other, "1800000000", body), body, now), Err("invalid signature"));
        let headers = signed(&key, "1800000000", body);
        assert_eq!(verify(&public, &headers, br#"{"type":2}"#, now), Err("invalid signature"), "a changed body");
        assert_eq!(verify(&public, &HeaderMap::new(), body, now), Err("missing X-Signature-Timestamp"));
        let mut short = signed(&key, "1800000000", body);
        short.insert("x-signature-ed25519", HeaderValue::from_static("abcd"));
        assert_eq!(verify(&public, &short, body, now), Err("X-Signature-Ed25519 is not 64 hex bytes"));
    }

    #[test]
    fn public_keys_are_64_hex_characters() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(public_key(&hex::encode(key.to_bytes())).is_ok());
        assert!(public_key("abc").is_err());
        assert!(public_key(&"zz".repeat(32)).is_err());
    }
}
