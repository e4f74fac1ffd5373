//! The Discord gateway, for bots without a public interactions endpoint: one WebSocket that
//! identifies with the bot token, heartbeats, and receives `INTERACTION_CREATE`, which goes
//! through the same [`Responder`] as the HTTP endpoint; the answer is posted to the
//! interaction's callback.
//!
//! Reconnecting is quiet: a dropped or zombied connection (no heartbeat ACK) resumes the session
//! where Discord allows it, otherwise identifies again, after a backoff that doubles up to a
//! minute; commands are registered once at start, never per connection. A close code that
//! retrying cannot fix (bad token, disallowed intents) stops the gateway with an error.
//!
//! The interaction inside `INTERACTION_CREATE` is decoded as serenity's `Interaction` (by the
//! shared [`inbound`](super::inbound) code); the connection and the envelope (`op`, `s`, `t`,
//! `d`, `READY`'s session) are ours. serenity's shard runner needs its `gateway` and `client`
//! features (its own tokio-tungstenite and TLS copies, the cache, the event handler framework),
//! and its `model::event::GatewayEvent`, though compiled with `model`, decodes every dispatch
//! into its full typed event: one that serenity 0.12 cannot decode — a payload shape Discord
//! has changed since, or a minimal `READY` — fails the whole frame, sequence number included,
//! which a resume needs. Reading the envelope ourselves keeps the sequence whatever the event.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::DiscordAdapter;
use super::inbound::{Answer, Responder, parse_value};
use crate::chat::platform::ChatHandler;
use crate::runbook::Catalogue;

/// Gateway opcodes.
const DISPATCH: u64 = 0;
const HEARTBEAT: u64 = 1;
const IDENTIFY: u64 = 2;
const RESUME: u64 = 6;
const RECONNECT: u64 = 7;
const INVALID_SESSION: u64 = 9;
const HELLO: u64 = 10;
const HEARTBEAT_ACK: u64 = 11;

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a new connection may take to say HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the gateway until `shutdown`, answering interactions with `handler`'s replies. Returns
/// an error only for what reconnecting cannot fix.
pub async fn run(
    handler: Arc<dyn ChatHandler>,
    adapter: Arc<DiscordAdapter>,
    catalogue: Arc<Catalogue>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let responder = Responder::new(handler, adapter.clone(), catalogue);
    let mut session = Session::default();
    let mut gateway_url: Option<String> = None;
    let mut failures: u32 = 0;
    loop {
        let url = match (&session.resume_url, &gateway_url) {
            (Some(resume), _) if session.id.is_some() => resume.clone(),
            (_, Some(url)) => url.clone(),
            _ => match adapter.gateway_url().await {
                Ok(url) => {
                    gateway_url = Some(url.clone());
                    url
                }
                Err(error) => {
                    tracing::warn!(%error, "Could not ask Discord for the gateway's address");
                    failures += 1;
                    if wait_or_stop(backoff(failures), &shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        let connected = Instant::now();
        let ended = connection(&url, &responder, &mut session, &shutdown).await;
        match ended {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Reconnect { resume }) => {
                if !resume {
                    session.forget();
                }
                tracing::info!(resume, "Reconnecting to the Discord gateway");
            }
            Err(GatewayError::Fatal(reason)) => {
                anyhow::bail!("the Discord gateway refused the bot: {reason}");
            }
            Err(GatewayError::Connection(reason)) => {
                tracing::warn!(reason, "The Discord gateway connection failed");
            }
        }
        // A connection that lasted resets the backoff; quick failures make it grow.
        failures = if connected.elapsed() > MAX_BACKOFF { 1 } else { failures + 1 };
        if wait_or_stop(backoff(failures), &shutdown).await {
            return Ok(());
        }
    }
}

/// True when `shutdown` came first.
async fn wait_or_stop(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// The wait before attempt number `failures` (1, 2, 4 … 60 s), with up to a quarter more at
/// random so many bots restarting together do not reconnect together.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    base + base.mul_f64(jitter() / 4.0)
}

/// A number in [0, 1) that differs between processes and calls; enough to spread reconnects.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000) / 1_000.0
}

/// What a session needs to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Session {
    pub id: Option<String>,
    pub sequence: Option<u64>,
    pub resume_url: Option<String>,
}

impl Session {
    fn forget(&mut self) {
        *self = Session::default();
    }
}

/// What one gateway payload asks of the connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Nothing,
    HeartbeatNow,
    HeartbeatAcknowledged,
    /// An interaction to answer.
    Interaction(Value),
    Reconnect {
        resume: bool,
    },
}

/// Reads one payload, updating the session (sequence, id, resume URL).
pub(crate) fn on_payload(session: &mut Session, payload: &Value) -> Step {
    let op = payload.get("op").and_then(Value::as_u64);
    if let Some(sequence) = payload.get("s").and_then(Value::as_u64) {
        session.sequence = Some(sequence);
    }
    match op {
        Some(DISPATCH) => {
            let data = payload.get("d").cloned().unwrap_or(Value::Null);
            match payload.get("t").and_then(Value::as_str) {
                Some("READY") => {
                    session.id = data.get("session_id").and_then(Value::as_str).map(str::to_string);
                    session.resume_url = data.get("resume_gateway_url").and_then(Value::as_str).map(str::to_string);
                    tracing::info!("Connected to the Discord gateway");
                    Step::Nothing
                }
                Some("RESUMED") => {
                    tracing::info!("Resumed the Discord gateway session");
                    Step::Nothing
                }
                Some("INTERACTION_CREATE") => Step::Interaction(data),
                _ => Step::Nothing,
            }
        }
        Some(HEARTBEAT) => Step::HeartbeatNow,
        Some(HEARTBEAT_ACK) => Step::HeartbeatAcknowledged,
        Some(RECONNECT) => Step::Reconnect { resume: true },
        Some(INVALID_SESSION) => Step::Reconnect { resume: payload.get("d").and_then(Value::as_bool).unwrap_or(false) },
        _ => Step::Nothing,
    }
}

/// What a close code means for the next connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterClose {
    Resume,
    Identify,
    Fatal(String),
}

pub(crate) fn after_close(code: u16) -> AfterClose {
    match code {
        4004 => AfterClose::Fatal("authentication failed (4004): check discord.token".to_string()),
        4010 | 4011 => AfterClose::Fatal(format!("sharding is required or invalid ({code})")),
        4012 => AfterClose::Fatal("invalid API version (4012)".to_string()),
        4013 | 4014 => AfterClose::Fatal(format!("invalid or disallowed intents ({code})")),
        4007 | 4009 => AfterClose::Identify,
        _ => AfterClose::Resume,
    }
}

pub(crate) fn identify(token: &str) -> Value {
    json!({
        "op": IDENTIFY,
        "d": {
            "token": token,
            // Interactions arrive whatever the intents; firebell needs no others.
            "intents": 0,
            "properties": {"os": std::env::consts::OS, "browser": "firebell", "device": "firebell"},
        }
    })
}

pub(crate) fn resume(token: &str, session: &Session) -> Option<Value> {
    Some(json!({
        "op": RESUME,
        "d": {"token": token, "session_id": session.id.as_ref()?, "seq": session.sequence?}
    }))
}

pub(crate) fn heartbeat(session: &Session) -> Value {
    json!({"op": HEARTBEAT, "d": session.sequence})
}

/// `wss://gateway.discord.gg` → `wss://gateway.discord.gg/?v=10&encoding=json`.
pub(crate) fn connect_url(url: &str) -> String {
    format!("{}/?v=10&encoding=json", url.trim_end_matches('/'))
}

#[derive(Debug)]
enum Ended {
    Shutdown,
    Reconnect { resume: bool },
}

#[derive(Debug)]
enum GatewayError {
    Fatal(String),
    Connection(String),
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: HELLO, identify or resume, then heartbeats and dispatches until it ends.
async fn connection(
    url: &str,
    responder: &Responder,
    session: &mut Session,
    shutdown: &CancellationToken,
) -> Result<Ended, GatewayError> {
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        connect_url(url),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(tls_config().map_err(GatewayError::Connection)?)),
    )
    .await
    .map_err(|error| GatewayError::Connection(format!("cannot connect: {error}")))?;
    let (mut sink, mut stream) = socket.split();

    let hello = tokio::time::timeout(HELLO_TIMEOUT, next_payload(&mut stream))
        .await
        .map_err(|_| GatewayError::Connection("no HELLO from the gateway".to_string()))??;
    let interval = hello
        .filter(|hello| hello.get("op").and_then(Value::as_u64) == Some(HELLO))
        .and_then(|hello| hello.pointer("/d/heartbeat_interval").and_then(Value::as_u64))
        // Held to a sane range: a hostile or broken peer's value must not overflow the clock.
        .map(|millis| Duration::from_millis(millis.clamp(1_000, 300_000)))
        .ok_or_else(|| GatewayError::Connection("the gateway's first message was not HELLO".to_string()))?;

    let token = responder.adapter().token().expose().to_string();
    let greeting = match resume(&token, session) {
        Some(resume) => resume,
        None => identify(&token),
    };
    send(&mut sink, &greeting).await?;

    // The first heartbeat goes at a random point of the first interval, as Discord asks.
    let mut next_beat = Instant::now() + interval.mul_f64(jitter());
    let mut acknowledged = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Frame::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "shutting down".into() }))).await;
                return Ok(Ended::Shutdown);
            }
            _ = tokio::time::sleep_until(next_beat) => {
                if !acknowledged {
                    tracing::warn!("The Discord gateway did not acknowledge a heartbeat; reconnecting");
                    let _ = sink.send(Frame::Close(Some(CloseFrame { code: CloseCode::Restart, reason: "zombied".into() }))).await;
                    return Ok(Ended::Reconnect { resume: true });
                }
                send(&mut sink, &heartbeat(session)).await?;
                acknowledged = false;
                next_beat = Instant::now() + interval;
            }
            frame = stream.next() => match frame {
                None => return Ok(Ended::Reconnect { resume: true }),
                Some(Err(error)) => return Err(GatewayError::Connection(error.to_string())),
                Some(Ok(Frame::Close(frame))) => {
                    let code = frame.map(|frame| u16::from(frame.code)).unwrap_or(1000);
                    return match after_close(code) {
                        AfterClose::Fatal(reason) => Err(GatewayError::Fatal(reason)),
                        AfterClose::Resume => Ok(Ended::Reconnect { resume: true }),
                        AfterClose::Identify => Ok(Ended::Reconnect { resume: false }),
                    };
                }
                Some(Ok(Frame::Text(text))) => {
                    let Ok(payload) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    match on_payload(session, &payload) {
                        Step::Nothing => {}
                        Step::HeartbeatAcknowledged => acknowledged = true,
                        Step::HeartbeatNow => send(&mut sink, &heartbeat(session)).await?,
                        Step::Interaction(interaction) => answer(responder.clone(), interaction),
                        Step::Reconnect { resume } => {
                            if !resume {
                                // Discord asks for a pause of 1–5 s before identifying again.
                                tokio::time::sleep(Duration::from_secs(1) + Duration::from_secs(4).mul_f64(jitter())).await;
                            }
                            let _ = sink.send(Frame::Close(Some(CloseFrame { code: CloseCode::Restart, reason: "reconnect".into() }))).await;
                            return Ok(Ended::Reconnect { resume });
                        }
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Answers one interaction from the gateway through its callback, in its own task.
fn answer(responder: Responder, interaction: Value) {
    tokio::spawn(async move {
        let raw_id = interaction.get("id").and_then(Value::as_str).unwrap_or("").to_string();
        let interaction = match parse_value(interaction) {
            Ok(interaction) => interaction,
            Err(reason) => {
                tracing::info!(reason, interaction = raw_id, "Ignored a malformed Discord interaction");
                return;
            }
        };
        let id = interaction.id().to_string();
        let token = interaction.token().to_string();
        match responder.answer(&interaction).await {
            Ok(Answer::Respond(response)) => {
                if let Err(error) = responder.adapter().interaction_callback(&id, &token, &response).await {
                    tracing::warn!(%error, interaction = id, "Could not answer a Discord interaction");
                }
            }
            Ok(Answer::Repeated) => {}
            Err(reason) => tracing::info!(reason, interaction = id, "Ignored a malformed Discord interaction"),
        }
    });
}

async fn next_payload(stream: &mut futures::stream::SplitStream<Socket>) -> Result<Option<Value>, GatewayError> {
    while let Some(frame) = stream.next().await {
        match frame.map_err(|error| GatewayError::Connection(error.to_string()))? {
            Frame::Text(text) => return Ok(serde_json::from_str(text.as_str()).ok()),
            Frame::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

async fn send(sink: &mut futures::stream::SplitSink<Socket, Frame>, payload: &Value) -> Result<(), GatewayError> {
    sink.send(Frame::Text(payload.to_string().into()))
        .await
        .map_err(|error| GatewayError::Connection(format!("cannot send: {error}")))
}

/// TLS for `wss://` with the bundled Mozilla roots (the image needs no CA certificates).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up for the Discord gateway: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_then_interactions_and_the_sequence_is_kept() {
        let mut session = Session::default();
        let ready = json!({"op": 0, "s": 1, "t": "READY", "d": {
            "v": 10, "session_id": "abc", "resume_gateway_url": "wss://resume.example", "user": {"id": "1"}}});
        assert_eq!(on_payload(&mut session, &ready), Step::Nothing);
        assert_eq!(session.id.as_deref(), Some("abc"));
        assert_eq!(session.resume_url.as_deref(), Some("wss://resume.example"));
        let interaction = json!({"id": "9", "type": 2, "token": "t"});
        let create = json!({"op": 0, "s": 2, "t": "INTERACTION_CREATE", "d": interaction});
        assert_eq!(on_payload(&mut session, &create), Step::Interaction(interaction));
        assert_eq!(session.sequence, Some(2));
        let other = json!({"op": 0, "s": 3, "t": "GUILD_CREATE", "d": {}});
        assert_eq!(on_payload(&mut session, &other), Step::Nothing);
        assert_eq!(heartbeat(&session), json!({"op": 1, "d": 3}));
        assert_eq!(
            resume("tok", &session),
            Some(json!({"op": 6, "d": {"token": "tok", "session_id": "abc", "seq": 3}}))
        );
    }

    #[test]
    fn control_opcodes() {
        let mut session = Session::default();
        assert_eq!(on_payload(&mut session, &json!({"op": 1})), Step::HeartbeatNow);
        assert_eq!(on_payload(&mut session, &json!({"op": 11})), Step::HeartbeatAcknowledged);
        assert_eq!(on_payload(&mut session, &json!({"op": 7})), Step::Reconnect { resume: true });
        assert_eq!(on_payload(&mut session, &json!({"op": 9, "d": false})), Step::Reconnect { resume: false });
        assert_eq!(on_payload(&mut session, &json!({"op": 9, "d": true})), Step::Reconnect { resume: true });
        assert_eq!(resume("tok", &session), None, "nothing to resume without a session");
        assert_eq!(identify("tok")["d"]["intents"], 0);
    }

    #[test]
    fn close_codes() {
        assert!(matches!(after_close(4004), AfterClose::Fatal(reason) if reason.contains("discord.token")));
        assert!(matches!(after_close(4014), AfterClose::Fatal(_)));
        assert_eq!(after_close(4009), AfterClose::Identify);
        assert_eq!(after_close(4000), AfterClose::Resume);
        assert_eq!(after_close(1001), AfterClose::Resume);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_millis(1_250));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) < Duration::from_secs(5));
        assert!(backoff(30) >= MAX_BACKOFF && backoff(30) <= MAX_BACKOFF + MAX_BACKOFF / 4);
        assert_eq!(connect_url("wss://gateway.discord.gg/"), "wss://gateway.discord.gg/?v=10&encoding=json");
    }
}
