//! Who may use the console, and proof that a form was sent by the console's own page.
//!
//! - On a loopback address the console is open: whoever can reach it is on the machine.
//! - On any other address it needs `[server] console_token`: `/login` takes the token and sets a
//!   session cookie (an expiry and its HMAC under the token, so it survives restarts and works
//!   on every replica, and changing the token logs everyone out). Without a token configured the
//!   console stays shut and says how to open it.
//! - Every request that changes something must carry the `firebell_csrf` cookie's value in the
//!   `X-Firebell-Csrf` header (or the login form's `csrf` field), and must not come from another
//!   origin: a page elsewhere can neither read the cookie nor set the header.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

pub const SESSION_COOKIE: &str = "firebell_session";
pub const CSRF_COOKIE: &str = "firebell_csrf";
pub const CSRF_HEADER: &str = "x-firebell-csrf";
/// How long a login lasts.
const SESSION_HOURS: i64 = 24;

/// How the console is reached, and so what it asks of people.
#[derive(Debug)]
pub enum Access {
    /// Listening on loopback: no login.
    Open,
    /// Listening elsewhere with `console_token` set: log in with it.
    Token(Secret),
    /// Listening elsewhere without a token: shut.
    Shut { listen: SocketAddr },
}

impl Access {
    pub fn new(listen: SocketAddr, token: Option<Secret>) -> Access {
        match token.filter(|token| !token.is_empty()) {
            _ if listen.ip().is_loopback() => Access::Open,
            Some(token) => Access::Token(token),
            None => Access::Shut { listen },
        }
    }

    /// Why the console is shut, for the page and the log.
    pub fn shut_reason(&self) -> Option<String> {
        match self {
            Access::Shut { listen } => Some(format!(
                "the web console is off: firebell listens on {listen}, which is not a loopback address, and \
                 [server] console_token is not set. Set console_token in firebell.toml to log in with it, or \
                 listen on 127.0.0.1."
            )),
            _ => None,
        }
    }

    pub fn needs_login(&self) -> bool {
        matches!(self, Access::Token(_))
    }

    /// True when the request may use the console.
    pub fn admits(&self, headers: &HeaderMap, now: DateTime<Utc>) -> bool {
        match self {
            Access::Open => true,
            Access::Shut { .. } => false,
            Access::Token(token) => {
                cookie(headers, SESSION_COOKIE).is_some_and(|value| session_valid(token, &value, now))
            }
        }
    }

    /// Checks a login attempt; on success, the `Set-Cookie` value of the new session.
    pub fn login(&self, given: &str, now: DateTime<Utc>) -> Option<HeaderValue> {
        let Access::Token(token) = self else { return None };
        if !constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()) {
            return None;
        }
        let expires = now.timestamp() + SESSION_HOURS * 3600;
        let value = format!("{expires}.{}", sign(token, expires));
        let cookie =
            format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_HOURS * 3600);
        HeaderValue::from_str(&cookie).ok()
    }
}

fn sign(token: &Secret, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes keys of any size");
    mac.update(format!("firebell-console-session:{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn session_valid(token: &Secret, value: &str, now: DateTime<Utc>) -> bool {
    let Some((expires, signature)) = value.split_once('.') else { return false };
    let Ok(expires) = expires.parse::<i64>() else { return false };
    expires > now.timestamp() && constant_time_eq(sign(token, expires).as_bytes(), signature.as_bytes())
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

    #[test]
    fn loopback_is_open_and_other_addresses_need_a_token() {
        let token = || Some(Secret::new("s3cret"));
        assert!(matches!(Access::new("127.0.0.1:8080".parse().unwrap(), None), Access::Open));
        assert!(matches!(Access::new("[::1]:8080".parse().unwrap(), token()), Access::Open));
        assert!(matches!(Access::new("0.0.0.0:8080".parse().unwrap(), token()), Access::Token(_)));
        let shut = Access::new("0.0.0.0:8080".parse().unwrap(), Some(Secret::new("")));
        assert!(shut.shut_reason().unwrap().contains("console_token"));
        assert!(!shut.admits(&HeaderMap::new(), Utc::now()));
    }

    #[test]
    fn a_session_needs_the_right_token_and_runs_out() {
        let access = Access::new("10.0.0.1:8080".parse().unwrap(), Some(Secret::new("s3cret")));
        let now = Utc::now();
        assert!(access.login("wrong", now).is_none());
        let set_cookie = access.login("s3cret", now).unwrap();
        let value = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let request = headers(&[("cookie", &format!("other=1; {value}"))]);
        assert!(access.admits(&request, now));
        assert!(!access.admits(&request, now + chrono::Duration::hours(SESSION_HOURS + 1)));
        let other = Access::new("10.0.0.1:8080".parse().unwrap(), Some(Secret::new("rotated")));
        assert!(!other.admits(&request, now), "a new token ends old sessions");
        let forged = headers(&[("cookie", &format!("{SESSION_COOKIE}=99999999999.deadbeef"))]);
        assert!(!access.admits(&forged, now));
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
