//! Who may talk to the playground: a defence against DNS rebinding and cross-site requests.
//!
//! The playground has no sign-in, and with a `command` backend it drives a coding agent, so a web
//! page the developer happens to visit must not reach it. Every request passes, in order:
//! 1. **Host**: on loopback only `localhost`, `127.0.0.1`, `[::1]` (or the loopback address it is
//!    bound to) on the listen port, so a rebound name such as `attacker.example:8080` is refused.
//!    With an operator token (`CHIME_PLAYGROUND_TOKEN`, needed by `--allow-remote-playground`)
//!    any Host is accepted, because that token is then mandatory on every request.
//! 2. **Origin** (`/api/*`): a browser's `Origin` must be this page's own, and `Sec-Fetch-Site`
//!    must be `same-origin` (or `none`, typed by the person): no other site, and no other port.
//! 3. **Page token** (`/api/*`): a random token made per process and rendered into the page;
//!    the page sends it as `X-Chime-Token`. `EventSource` cannot send headers, so the event
//!    stream also takes it from a `SameSite=Strict` cookie the page load sets.
//!
//! Every response also forbids framing (`frame-ancestors 'none'`, `X-Frame-Options: DENY`).

use super::http::{error, Playground};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The header the page sends its token in.
pub const TOKEN_HEADER: &str = "x-chime-token";
/// The cookie that carries the token to the event stream.
pub const TOKEN_COOKIE: &str = "chime_page";
/// Where the token goes in the page.
pub const TOKEN_PLACEHOLDER: &str = "__CHIME_PAGE_TOKEN__";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A fresh token for this process: 32 random bytes, hex.
pub fn new_page_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The cookie that lets the page's event stream in (HttpOnly: scripts never read it).
pub fn page_cookie(token: &str) -> String {
    format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/api/local/stream")
}

/// Forbids framing and sniffing on every playground response, refusals included.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Whether `host` (a Host header) names this server on loopback.
pub fn is_loopback_host(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]:8080`, `localhost:8080`; a bare `[::1]` has its last ':' inside the brackets.
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let port_ok = match port {
        Some(p) => p == bound.port(),
        None => bound.port() == 80 && !host.ends_with(':'),
    };
    let name = name.to_ascii_lowercase();
    let bound_ip = match bound.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let name_ok = matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
        || (bound.ip().is_loopback() && name == bound_ip);
    port_ok && name_ok
}

fn header(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses requests whose Host is not this server's loopback name (unless an operator token
/// guards the playground).
pub async fn check_host(
    State(state): State<Arc<Playground>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let host = header(req.headers(), header::HOST).unwrap_or_default();
    if state.access_token.is_none() && !is_loopback_host(host, state.addr) {
        tracing::warn!(host = %host.escape_debug(), path = %path, "refused a playground request for a foreign Host (DNS rebinding?)");
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "this playground answers only to localhost:{0}, 127.0.0.1:{0} or [::1]:{0}, not to Host {host:?}",
                state.addr.port()
            ),
        );
    }
    next.run(req).await
}

/// Refuses `/api/*` requests from other origins or without the page token.
pub async fn check_api(State(state): State<Arc<Playground>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    let host = header(headers, header::HOST).unwrap_or_default();
    if let Some(origin) = header(headers, header::ORIGIN) {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            tracing::warn!(origin = %origin.escape_debug(), path = %path, "refused a cross-origin playground request");
            return error(
                StatusCode::FORBIDDEN,
                format!("requests from {origin:?} are refused: only the playground page itself may call its API"),
            );
        }
    }
    if let Some(site) = header(headers, "sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            tracing::warn!(sec_fetch_site = %site.escape_debug(), path = %path, "refused a cross-site playground request");
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "a {site} request is refused: only the playground page itself may call its API"
                ),
            );
        }
    }
    let expected = state.page_token.as_bytes();
    let matches = |given: &str| -> bool { given.as_bytes().ct_eq(expected).into() };
    let by_header = header(headers, TOKEN_HEADER).is_some_and(matches);
    let by_cookie = path == "/api/local/stream"
        && header(headers, header::COOKIE).is_some_and(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
                .any(matches)
        });
    if !(by_header || by_cookie) {
        tracing::info!(path = %path, "refused a playground API request without the page token");
        return error(
            StatusCode::FORBIDDEN,
            "missing or stale page token (X-Chime-Token): reload the playground page",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_on_the_port() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LocalHost:8080",
        ] {
            assert!(is_loopback_host(ok, bound), "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "localhost:8081",
            "localhost",
            "127.0.0.1",
            "127.0.0.1.nip.io:8080",
            "localhost.:8080",
            "",
            "[::1]",
            "localhost:8080:8080",
        ] {
            assert!(!is_loopback_host(bad, bound), "{bad}");
        }
        let on80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(is_loopback_host("localhost", on80));
        assert!(is_loopback_host("[::1]", on80));
        let other: SocketAddr = "127.0.0.2:9000".parse().unwrap();
        assert!(is_loopback_host("127.0.0.2:9000", other));
    }
}
