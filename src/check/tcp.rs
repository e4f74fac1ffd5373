//! `kind = "tcp"`: can we connect; sees `latency_ms`.

use std::time::Instant;

use futures::future::BoxFuture;
use serde_json::json;

use super::{Check, CheckContext, Observation, Status, millis};
use crate::runbook::{Args, Encoding, Fields, Template};

#[derive(Debug)]
pub struct TcpCheck {
    host: Template,
    port: u16,
}

impl TcpCheck {
    pub const KEYS: &'static [&'static str] = &["host", "port"];
    pub const VARIABLES: &'static [&'static str] = &["latency_ms"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
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
