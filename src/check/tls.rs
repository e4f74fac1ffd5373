//! `kind = "tls"`: the certificate a server presents; sees `days_left`, `not_after`, `subject`,
//! `issuer` and `trusted`. An expired or untrusted certificate still reports its dates: the
//! verifier records the verdict instead of aborting the handshake. Default thresholds: warn
//! under 30 days, crit under 7.

use serde::Deserialize;
use std::sync::{Arc, Mutex};
use toml::Spanned;

use futures::future::BoxFuture;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::json;

use super::{Check, CheckContext, Fields, Observation, Status};
use crate::template::{Args, Encoding, Template};

const WARN_DAYS: i64 = 30;
const CRIT_DAYS: i64 = 7;

/// The keys of a `kind = "tls"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    server_name: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    verify: Option<Spanned<bool>>,
}

#[derive(Debug)]
pub struct TlsCheck {
    host: Template,
    port: u16,
    server_name: Option<Template>,
    /// Extra trusted roots (PEM), for internal CAs.
    ca_file: Option<String>,
    /// `false`: judge the dates only, not the chain.
    verify: bool,
}

impl TlsCheck {
    pub const VARIABLES: &'static [&'static str] = &["days_left", "not_after", "subject", "issuer", "trusted"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let host = fields.required_template("host", &raw.host);
        let server_name = fields.template("server_name", &raw.server_name);
        let port = raw.port.as_ref().map(|port| *port.get_ref()).unwrap_or(443);
        if port == 0 {
            fields.error(raw.port.as_ref().unwrap().span(), "port must be 1–65535");
            return None;
        }
        Some(TlsCheck {
            host: host?,
            port,
            server_name,
            ca_file: raw.ca_file.as_ref().map(|file| file.get_ref().clone()),
            verify: raw.verify.as_ref().map(|verify| *verify.get_ref()).unwrap_or(true),
        })
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_file {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("cannot read ca_file {path}: {error}"))?;
            for certificate in certificates {
                roots.add(certificate).map_err(|error| format!("ca_file {path}: {error}"))?;
            }
        }
        Ok(roots)
    }
}

/// The server's certificate (DER) and the chain verification's verdict on it.
type SeenCertificate = (Vec<u8>, Result<(), rustls::Error>);

/// Runs the real chain verification, remembers its verdict and the certificate, and lets the
/// handshake finish either way so the dates can be read.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<SeenCertificate>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now).map(|_| ());
        *self.seen.lock().expect("verifier lock") = Some((end_entity.to_vec(), verdict));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl Check for TlsCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let host = self.host.render(context.args, Encoding::Raw);
            let name = self
                .server_name
                .as_ref()
                .map(|name| name.render(context.args, Encoding::Raw))
                .unwrap_or_else(|| host.clone());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|error| format!("cannot set up certificate verification: {error}"))?;
            let verifier = Arc::new(RecordingVerifier { inner, seen: Mutex::new(None) });
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            let server_name =
                ServerName::try_from(name.clone()).map_err(|_| format!("'{name}' is not a valid server name"))?;
            let stream = tokio::net::TcpStream::connect((host.as_str(), self.port))
                .await
                .map_err(|error| format!("cannot connect to {host}:{}: {error}", self.port))?;
            let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, stream).await;
            let seen = verifier.seen.lock().expect("verifier lock").take();
            let Some((der, verdict)) = seen else {
                let reason =
                    handshake.err().map(|error| error.to_string()).unwrap_or_else(|| "no certificate presented".into());
                return Err(format!("TLS handshake with {host}:{} failed: {reason}", self.port));
            };
            judge_certificate(&der, verdict, self.verify, chrono::Utc::now())
        })
    }

    fn describe(&self, args: &Args) -> String {
        let mut text = format!(
            "TLS certificate of {} port {}",
            super::http::quoted(&self.host.render(args, Encoding::Raw)),
            self.port
        );
        if let Some(name) = &self.server_name {
            text.push_str(&format!(", server name {}", super::http::quoted(&name.render(args, Encoding::Raw))));
        }
        if let Some(ca_file) = &self.ca_file {
            text.push_str(&format!(", trusting {}", super::http::quoted(ca_file)));
        }
        if !self.verify {
            text.push_str(", dates only (chain not verified)");
        }
        text
    }
}

fn judge_certificate(
    der: &[u8],
    verdict: Result<(), rustls::Error>,
    verify: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Observation, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("cannot parse the server's certificate: {error}"))?;
    let not_after =
        chrono::DateTime::from_timestamp(certificate.validity().not_after.timestamp(), 0).unwrap_or_default();
    let seconds_left = (not_after - now).num_seconds();
    let days_left = seconds_left.div_euclid(86_400);
    let subject = certificate.subject().to_string();
    let issuer = certificate.issuer().to_string();
    // Expiry is reported from the dates themselves; any other refusal means "not trusted".
    let trust_problem = match verdict {
        Ok(()) => None,
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)) => None,
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })) => None,
        Err(error) => Some(error.to_string()),
    };
    let date = not_after.format("%Y-%m-%d %H:%M UTC");
    let (status, mut summary) = if seconds_left < 0 {
        // Whole days since it expired: 2 days and 1 hour ago is "2 days ago", not 3.
        (Status::Crit, format!("certificate EXPIRED on {date} ({} days ago)", -seconds_left / 86_400))
    } else if days_left < CRIT_DAYS {
        (Status::Crit, format!("certificate expires {date}, {days_left} days left"))
    } else if days_left < WARN_DAYS {
        (Status::Warn, format!("certificate expires {date}, {days_left} days left"))
    } else {
        (Status::Ok, format!("certificate valid until {date}, {days_left} days left"))
    };
    let status = match &trust_problem {
        Some(problem) if verify => {
            summary.push_str(&format!("; NOT TRUSTED: {problem}"));
            Status::Crit
        }
        _ => status,
    };
    summary.push_str(&format!("; subject {subject}"));
    Ok(Observation::new(
        summary,
        status,
        json!({
            "days_left": days_left,
            "not_after": not_after.to_rfc3339(),
            "subject": subject,
            "issuer": issuer,
            "trusted": trust_problem.is_none(),
        }),
    ))
}
