//! `kind = "tcp"`: can we connect; sees `latency_ms`.

use serde::Deserialize;
use std::time::Instant;
use toml::Spanned;

use futures::future::BoxFuture;
use serde_json::json;

use super::{Check, CheckContext, Fields, Observation, Status, millis};
use crate::template::{Args, Encoding, Template};

/// The keys of a `kind = "tcp"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
}

#[derive(Debug)]
pub struct TcpCheck {
    host: Template,
    port: u16,
}

impl TcpCheck {
    pub const VARIABLES: &'static [&'static str] = &["latency_ms"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let host = fields.required_template("host", &raw.host);
        let Some(port) = &raw.port else {
            fields.error(fields.kind_span(), "a tcp check needs `port` (1–65535)");
            return None;
        };
        if *port.get_ref() == 0 {
            fields.error(port.span(), "port must be 1–65535");
            return None;
        }
        Some(TcpCheck { host: host?, port: *port.get_ref() })
    }
}

impl Check for TcpCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let host = self.host.render(context.args, Encoding::Raw);
            let started = Instant::now();
            tokio::net::TcpStream::connect((host.as_str(), self.port))
                .await
                .map_err(|error| format!("cannot connect to {host}:{}: {error}", self.port))?;
            let latency_ms = millis(started.elapsed());
            Ok(Observation::new(
                format!("connected to {host}:{} in {latency_ms} ms", self.port),
                Status::Ok,
                json!({"latency_ms": latency_ms}),
            ))
        })
    }

    fn describe(&self, args: &Args) -> String {
        format!("TCP connect to {} port {}", super::http::quoted(&self.host.render(args, Encoding::Raw)), self.port)
    }
}
