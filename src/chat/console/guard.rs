//! Who may use the console, who each caller is, and proof that a form was sent by the console's
//! own page.
//!
//! - A person is **proven** when they signed in at `/login` with their own token from
//!   `[console] people`, or came through a sign-in proxy from `[console] trusted_proxies` that
//!   names them in `[console] auth_header`. Everything a proven person does is theirs: a request
//!   naming someone else is refused.
//! - Otherwise names are **chosen**: on a loopback address the console is open to whoever can
//!   reach it, and elsewhere the shared `[server] console_token` lets people in. Chosen names
//!   diagnose and handle incidents, but take no part in remediations and read no direct messages.
//! - On any other address with none of these configured the console stays shut and says how to
//!   open it.
//! - Sessions are a cookie: the person (or "shared"), an expiry and an HMAC under that person's
//!   own token (the shared token for shared sessions). So a session survives restarts and works
//!   on every replica, and rotating one person's token ends only that person's sessions.
//! - `/login` is rate-limited per client address and per name.
//! - Every request that changes something must carry the `firebell_csrf` cookie's value in the
//!   `X-Firebell-Csrf` header (or the login form's `csrf` field), and must not come from another
//!   origin: a page elsewhere can neither read the cookie nor set the header.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{CONSOLE_NAME, Cidr, ConsoleConfig, Secret};

pub const SESSION_COOKIE: &str = "firebell_session";
pub const CSRF_COOKIE: &str = "firebell_csrf";
pub const CSRF_HEADER: &str = "x-firebell-csrf";
/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 24;
/// Failed sign-ins allowed per client address, and per name, in one [`LOGIN_WINDOW_SECS`].
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 10;
pub const LOGIN_FAILURES_PER_NAME: u32 = 5;
pub const LOGIN_WINDOW_SECS: i64 = 300;
/// The limiter forgets old windows once it tracks this many addresses and names.
const LIMITER_ENTRIES: usize = 10_000;

/// How the console is reached, and so what it asks of people.
#[derive(Debug)]
pub struct Access {
    listen: SocketAddr,
    /// `[server] console_token`: the shared token (names chosen).
    shared: Option<Secret>,
    /// `[console] people`: each person's own sign-in token.
    people: BTreeMap<String, Secret>,
    /// `[console] auth_header` (lowercase) with the proxies allowed to set it.
    proxy_header: Option<String>,
    trusted_proxies: Vec<Cidr>,
    limiter: Mutex<LoginLimiter>,
}

/// Who a request is from, as far as the console can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The proven person's name; `None` when names are chosen.
    pub proven: Option<String>,
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The open loopback console.
    Open,
    /// A session from the shared `console_token`.
    SharedSession,
    /// A session from the person's own token.
    PersonSession,
    /// A trusted sign-in proxy's header.
    Proxy,
}

impl Caller {
    pub fn has_session(&self) -> bool {
        matches!(self.via, Via::SharedSession | Via::PersonSession)
    }
}

/// Why a request may not use the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The console is off on this address; the reason says how to open it.
    Shut(String),
    /// Sign in first.
    SignIn,
    /// A trusted proxy sent something that is not a console name.
    BadProxyName(String),
}

/// A failed or refused sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Too many failures from this address or for this name; retry after this many seconds.
    TooMany { what: String, retry_after_secs: i64 },
    /// The name and token do not match.
    Wrong,
    /// There is nothing to sign in with.
    NotConfigured,
}

impl Access {
    pub fn new(listen: SocketAddr, shared: Option<Secret>, console: &ConsoleConfig) -> Access {
        Access {
            listen,
            shared: shared.filter(|token| !token.is_empty()),
            people: console
                .people
                .iter()
                .filter(|(_, token)| !token.get_ref().is_empty())
                .map(|(name, token)| (name.clone(), token.get_ref().clone()))
                .collect(),
            proxy_header: console.auth_header_name().map(str::to_ascii_lowercase),
            trusted_proxies: console.trusted_proxy_networks(),
            limiter: Mutex::new(LoginLimiter::default()),
        }
    }

    fn loopback(&self) -> bool {
        self.listen.ip().is_loopback()
    }

    /// True when people can be proven here (per-person tokens or a sign-in proxy).
    pub fn proves_people(&self) -> bool {
        !self.people.is_empty() || self.proxy_header.is_some()
    }

    /// True when `/login` has something to check (per-person tokens or the shared token).
    pub fn offers_sign_in(&self) -> bool {
        !self.people.is_empty() || self.shared.is_some()
    }

    pub fn signs_in_people(&self) -> bool {
        !self.people.is_empty()
    }

    /// Why the console is shut, for the page and the log.
    pub fn shut_reason(&self) -> Option<String> {
        if self.loopback() || self.offers_sign_in() || self.proxy_header.is_some() {
            return None;
        }
        Some(format!(
            "the web console is off: firebell listens on {}, which is not a loopback address, and no sign-in is \
             configured. Set [console] people (a sign-in token per person) or [console] auth_header with \
             trusted_proxies (a sign-in proxy), or the shared [server] console_token, in firebell.toml; or listen \
             on 127.0.0.1.",
            self.listen
        ))
    }

    /// True when a caller who is not signed in must sign in first (not on loopback).
    pub fn needs_login(&self) -> bool {
        !self.loopback()
    }

    /// How to become a proven person here, for refusals of what needs one.
    pub fn how_to_prove(&self) -> String {
        if self.proves_people() {
            let mut ways = Vec::new();
            if self.signs_in_people() {
                ways.push("sign in at /login with your name and your own token from [console] people".to_string());
            }
            if let Some(header) = &self.proxy_header {
                ways.push(format!("come through the sign-in proxy that sets {header} ([console] auth_header)"));
            }
            format!("to do this, {}", ways.join(", or "))
        } else {
            "to turn sign-in on, set [console] people = { alice = \"${ALICE_CONSOLE_TOKEN}\", … } in firebell.toml \
             (each person signs in at /login with their name and token), or [console] auth_header and \
             trusted_proxies behind a sign-in proxy (oauth2-proxy, Authelia)"
                .to_string()
        }
    }

    /// The peer is one of `[console] trusted_proxies`.
    pub fn trusted_peer(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|peer| self.trusted_proxies.iter().any(|network| network.contains(peer.ip())))
    }

    /// Who the request is from, or why it may not use the console. `peer` is the TCP peer.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        now: DateTime<Utc>,
    ) -> Result<Caller, NotAdmitted> {
        if let Some(reason) = self.shut_reason() {
            return Err(NotAdmitted::Shut(reason));
        }
        // A sign-in proxy's header counts only from the proxy: anyone else could send it.
        if let Some(header) = &self.proxy_header
            && self.trusted_peer(peer)
            && let Some(value) = headers.get(header.as_str())
        {
            let name = value.to_str().unwrap_or("").trim();
            if !name.is_empty() {
                if !CONSOLE_NAME.is_match(name) {
                    return Err(NotAdmitted::BadProxyName(format!(
                        "the sign-in proxy's {header} header names '{name}', which is not a console name: names are \
                         1–32 letters, digits, '.', '_' or '-', starting with a letter or digit"
                    )));
                }
                return Ok(Caller { proven: Some(name.to_string()), via: Via::Proxy });
            }
        }
        if let Some(session) = cookie(headers, SESSION_COOKIE).and_then(|value| self.session(&value, now)) {
            return Ok(session);
        }
        if self.loopback() {
            return Ok(Caller { proven: None, via: Via::Open });
        }
        Err(NotAdmitted::SignIn)
    }

    /// A session cookie's caller, when the cookie is valid now.
    fn session(&self, value: &str, now: DateTime<Utc>) -> Option<Caller> {
        let parts: Vec<&str> = value.split(':').collect();
        match parts.as_slice() {
            ["p", name, expires, signature] => {
                let token = self.people.get(*name)?;
                let expires = expires.parse::<i64>().ok().filter(|expires| *expires > now.timestamp())?;
                let expected = sign(token, &format!("person:{name}:{expires}"));
                constant_time_eq(expected.as_bytes(), signature.as_bytes())
                    .then(|| Caller { proven: Some(name.to_string()), via: Via::PersonSession })
            }
            ["s", expires, signature] => {
                let token = self.shared.as_ref()?;
                let expires = expires.parse::<i64>().ok().filter(|expires| *expires > now.timestamp())?;
                let expected = sign(token, &format!("shared:{expires}"));
                constant_time_eq(expected.as_bytes(), signature.as_bytes())
                    .then_some(Caller { proven: None, via: Via::SharedSession })
            }
            _ => None,
        }
    }

    /// Checks a sign-in from `client`: `name` with their own token proves the person; the
    /// shared token (with any name, or none) starts a session whose names are chosen. On
    /// success, the caller and the cookie's value.
    pub fn login(
        &self,
        client: IpAddr,
        name: &str,
        given: &str,
        now: DateTime<Utc>,
    ) -> Result<(Caller, String), LoginError> {
        if !self.offers_sign_in() {
            return Err(LoginError::NotConfigured);
        }
        let name = name.trim();
        let given = given.trim();
        let name_key = (!name.is_empty()).then(|| name.to_ascii_lowercase());
        self.limiter.lock().expect("limiter lock").check(client, name_key.as_deref(), now.timestamp())?;
        let expires = now.timestamp() + SESSION_HOURS * 3600;
        if let Some(token) = self.people.get(name)
            && constant_time_eq(given.as_bytes(), token.expose().as_bytes())
        {
            let value = format!("p:{name}:{expires}:{}", sign(token, &format!("person:{name}:{expires}")));
            return Ok((Caller { proven: Some(name.to_string()), via: Via::PersonSession }, value));
        }
        if let Some(token) = &self.shared
            && constant_time_eq(given.as_bytes(), token.expose().as_bytes())
        {
            let value = format!("s:{expires}:{}", sign(token, &format!("shared:{expires}")));
            return Ok((Caller { proven: None, via: Via::SharedSession }, value));
        }
        self.limiter.lock().expect("limiter lock").fail(client, name_key.as_deref(), now.timestamp());
        Err(LoginError::Wrong)
    }
}

/// The `Set-Cookie` value of a session; `Secure` when the page was served over HTTPS.
pub fn session_cookie(value: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_HOURS * 3600
    );
    HeaderValue::from_str(&cookie).expect("a session cookie is a valid header value")
}

/// The `Set-Cookie` value that ends the session in this browser.
pub fn cleared_session_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .expect("a valid header value")
}

/// Failed sign-ins per client address and per name, in fixed windows.
#[derive(Debug, Default)]
struct LoginLimiter {
    addresses: HashMap<IpAddr, (i64, u32)>,
    names: HashMap<String, (i64, u32)>,
}

impl LoginLimiter {
    fn check(&mut self, client: IpAddr, name: Option<&str>, now: i64) -> Result<(), LoginError> {
        let over = |entry: Option<&(i64, u32)>, limit: u32| match entry {
            Some((start, failures)) if now - start < LOGIN_WINDOW_SECS && *failures >= limit => {
                Some(start + LOGIN_WINDOW_SECS - now)
            }
            _ => None,
        };
        if let Some(retry) = over(self.addresses.get(&client), LOGIN_FAILURES_PER_ADDRESS) {
            return Err(LoginError::TooMany { what: format!("from {client}"), retry_after_secs: retry.max(1) });
        }
        if let Some(name) = name
            && let Some(retry) = over(self.names.get(name), LOGIN_FAILURES_PER_NAME)
        {
            return Err(LoginError::TooMany { what: format!("for the name {name}"), retry_after_secs: retry.max(1) });
        }
        Ok(())
    }

    fn fail(&mut self, client: IpAddr, name: Option<&str>, now: i64) {
        if self.addresses.len() + self.names.len() > LIMITER_ENTRIES {
            self.addresses.retain(|_, (start, _)| now - *start < LOGIN_WINDOW_SECS);
            self.names.retain(|_, (start, _)| now - *start < LOGIN_WINDOW_SECS);
        }
        let count = |entry: &mut (i64, u32)| {
            if now - entry.0 >= LOGIN_WINDOW_SECS {
                *entry = (now, 0);
            }
            entry.1 += 1;
        };
        count(self.addresses.entry(client).or_insert((now, 0)));
        if let Some(name) = name {
            count(self.names.entry(name.to_string()).or_insert((now, 0)));
        }
    }
}

fn sign(key: &Secret, what: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes keys of any size");
    mac.update(format!("firebell-console-session:{what}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A fresh CSRF token and its `Set-Cookie` value (readable by the page's script, which echoes
/// it in a header).
pub fn new_csrf_cookie() -> (String, HeaderValue) {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    let token = hex::encode(bytes);
    let cookie = HeaderValue::from_str(&format!("{CSRF_COOKIE}={token}; Path=/; SameSite=Strict"))
        .expect("hex is a valid header value");
    (token, cookie)
}

/// Checks that a state-changing request came from the console's own page: the CSRF token it
/// sent (`sent`, from the header or the form) equals the cookie, and no other origin sent it.
pub fn check_same_origin(headers: &HeaderMap, sent: Option<&str>) -> Result<(), &'static str> {
    if headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()).is_some_and(|site| site == "cross-site") {
        return Err("this request came from another site");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
        if origin != "null" && origin_host != host {
            return Err("this request came from another origin");
        }
        if origin == "null" {
            return Err("this request came from an opaque origin");
        }
    }
    let expected = cookie(headers, CSRF_COOKIE).filter(|value| !value.is_empty());
    match (expected, sent) {
        (Some(expected), Some(sent)) if constant_time_eq(expected.as_bytes(), sent.as_bytes()) => Ok(()),
        (None, _) => Err("the console's CSRF cookie is missing; reload the page"),
        _ => Err("the CSRF token does not match; reload the page"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn console(text: &str) -> ConsoleConfig {
        let config = crate::config::Config::parse(&crate::source::SourceFile::new("firebell.toml", text))
            .unwrap_or_else(|errors| panic!("{errors}"));
        config.console
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    fn cookie_header(value: &str) -> HeaderMap {
        headers(&[("cookie", &format!("other=1; {SESSION_COOKIE}={value}"))])
    }

    #[test]
    fn loopback_is_open_and_other_addresses_need_a_sign_in() {
        let none = ConsoleConfig::default();
        let open = Access::new("127.0.0.1:8080".parse().unwrap(), None, &none);
        assert_eq!(open.identify(&HeaderMap::new(), None, Utc::now()), Ok(Caller { proven: None, via: Via::Open }));
        let shared = Access::new("0.0.0.0:8080".parse().unwrap(), Some(Secret::new("s3cret")), &none);
        assert_eq!(shared.identify(&HeaderMap::new(), None, Utc::now()), Err(NotAdmitted::SignIn));
        let shut = Access::new("0.0.0.0:8080".parse().unwrap(), Some(Secret::new("")), &none);
        let reason = shut.shut_reason().unwrap();
        assert!(reason.contains("console_token") && reason.contains("[console] people"), "{reason}");
    }

    #[test]
    fn a_shared_session_needs_the_right_token_runs_out_and_proves_nobody() {
        let access = Access::new("10.0.0.1:8080".parse().unwrap(), Some(Secret::new("s3cret")), &Default::default());
        let now = Utc::now();
        assert_eq!(access.login(CLIENT, "", "wrong", now), Err(LoginError::Wrong));
        let (caller, value) = access.login(CLIENT, "", "s3cret", now).unwrap();
        assert_eq!(caller, Caller { proven: None, via: Via::SharedSession });
        assert_eq!(access.identify(&cookie_header(&value), None, now), Ok(caller));
        let later = now + chrono::Duration::hours(SESSION_HOURS + 1);
        assert_eq!(access.identify(&cookie_header(&value), None, later), Err(NotAdmitted::SignIn));
        let rotated = Access::new("10.0.0.1:8080".parse().unwrap(), Some(Secret::new("rotated")), &Default::default());
        assert_eq!(
            rotated.identify(&cookie_header(&value), None, now),
            Err(NotAdmitted::SignIn),
            "a new token ends sessions"
        );
        assert!(access.identify(&cookie_header("s:99999999999:deadbeef"), None, now).is_err());
    }

    #[test]
    fn a_person_session_is_bound_to_the_name_and_to_that_persons_token() {
        let people =
            console("[console]\npeople = { alice = \"alice-token-0123456789\", bob = \"bob-token-0123456789ab\" }\n");
        let access = Access::new("10.0.0.1:8080".parse().unwrap(), None, &people);
        let now = Utc::now();
        assert_eq!(access.login(CLIENT, "alice", "bob-token-0123456789ab", now), Err(LoginError::Wrong));
        let (caller, alice) = access.login(CLIENT, "alice", "alice-token-0123456789", now).unwrap();
        assert_eq!(caller.proven.as_deref(), Some("alice"));
        assert_eq!(access.identify(&cookie_header(&alice), None, now).unwrap().proven.as_deref(), Some("alice"));
        let (_, bob) = access.login(CLIENT, "bob", "bob-token-0123456789ab", now).unwrap();
        // Renaming the cookie's person breaks its signature.
        let forged = alice.replacen("p:alice:", "p:bob:", 1);
        assert_eq!(access.identify(&cookie_header(&forged), None, now), Err(NotAdmitted::SignIn));
        // Rotating alice's token ends her sessions only.
        let rotated =
            console("[console]\npeople = { alice = \"alice-new-token-0123456\", bob = \"bob-token-0123456789ab\" }\n");
        let rotated = Access::new("10.0.0.1:8080".parse().unwrap(), None, &rotated);
        assert_eq!(rotated.identify(&cookie_header(&alice), None, now), Err(NotAdmitted::SignIn));
        assert_eq!(rotated.identify(&cookie_header(&bob), None, now).unwrap().proven.as_deref(), Some("bob"));
    }

    #[test]
    fn the_proxy_header_counts_only_from_a_trusted_peer() {
        let proxied = console("[console]\nauth_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.9.0.0/16\"]\n");
        let access = Access::new("0.0.0.0:8080".parse().unwrap(), None, &proxied);
        let request = headers(&[("x-forwarded-user", "carol")]);
        let now = Utc::now();
        let trusted = access.identify(&request, Some("10.9.4.4:5000".parse().unwrap()), now);
        assert_eq!(trusted, Ok(Caller { proven: Some("carol".into()), via: Via::Proxy }));
        let stranger = access.identify(&request, Some("10.8.4.4:5000".parse().unwrap()), now);
        assert_eq!(stranger, Err(NotAdmitted::SignIn));
        let bad = headers(&[("x-forwarded-user", "carol smith")]);
        assert!(matches!(
            access.identify(&bad, Some("10.9.4.4:5000".parse().unwrap()), now),
            Err(NotAdmitted::BadProxyName(_))
        ));
    }

    #[test]
    fn sign_in_failures_are_limited_per_address_and_per_name() {
        let people = console("[console]\npeople = { alice = \"alice-token-0123456789\" }\n");
        let access = Access::new("10.0.0.1:8080".parse().unwrap(), None, &people);
        let now = Utc::now();
        for _ in 0..LOGIN_FAILURES_PER_NAME {
            assert_eq!(access.login(CLIENT, "alice", "guess", now), Err(LoginError::Wrong));
        }
        let other_client: IpAddr = "10.1.2.4".parse().unwrap();
        let limited = access.login(other_client, "alice", "alice-token-0123456789", now);
        assert!(matches!(limited, Err(LoginError::TooMany { ref what, .. }) if what.contains("alice")), "{limited:?}");
        let later = now + chrono::Duration::seconds(LOGIN_WINDOW_SECS);
        assert!(access.login(other_client, "alice", "alice-token-0123456789", later).is_ok(), "the window ends");
    }

    #[test]
    fn state_changes_need_the_cookie_echoed_from_the_same_origin() {
        let cookie = format!("{CSRF_COOKIE}=abc123");
        let same = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(check_same_origin(&same, Some("abc123")), Ok(()));
        assert!(check_same_origin(&same, Some("abc124")).is_err());
        assert!(check_same_origin(&same, None).is_err());
        let elsewhere = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert!(check_same_origin(&elsewhere, Some("abc123")).is_err());
        let cross = headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]);
        assert!(check_same_origin(&cross, Some("abc123")).is_err());
        assert!(check_same_origin(&headers(&[]), Some("abc123")).is_err(), "no cookie, no write");
    }
}
