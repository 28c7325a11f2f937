//! The HTTP server under the router, hardened against slow and half-open clients (Slowloris): a
//! cap on open connections, a deadline for each request's headers (which also closes idle
//! keep-alive connections) and for its body, so such clients cannot starve `/healthz`, or take the
//! file descriptors SQLite, git and the agent need.

use crate::config::ServerConfig;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What the server allows each client, from `[server]`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A request's headers must arrive within this; an idle keep-alive connection closes after it.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this once its headers have.
    pub body_read_timeout: Duration,
    /// On shutdown, open connections get this long to finish their responses.
    pub grace: Duration,
}

impl Limits {
    /// The configured limits, with the connection cap kept to half the open-file limit so that
    /// connections alone can never exhaust it.
    pub fn from_config(c: &ServerConfig) -> Self {
        let mut max_connections = c.max_connections.max(1);
        if let Some(files) = open_file_limit() {
            let room = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
            if room < max_connections {
                tracing::info!(
                    configured = max_connections,
                    open_file_limit = files,
                    "server.max_connections lowered to half the open-file limit: {room}"
                );
                max_connections = room;
            }
        }
        Self {
            max_connections,
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(c.body_read_timeout_secs),
            grace: Duration::from_secs(c.shutdown_grace_secs),
        }
    }
}

fn open_file_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
    (ok && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

/// Serves `router` on `listener` until `shutdown` fires, then lets open responses finish (up to
/// the grace period) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_read_timeout,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    static AT_CAP: Sampled = Sampled::new(Duration::from_secs(60));
    static ACCEPT_FAILED: Sampled = Sampled::new(Duration::from_secs(60));
    loop {
        if permits.available_permits() == 0 {
            if let Some(suppressed) = AT_CAP.hit() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    suppressed,
                    "connection cap reached: new connections wait until one closes (server.max_connections)"
                );
            }
        }
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    if let Some(suppressed) = ACCEPT_FAILED.hit() {
                        tracing::warn!(error = %e, suppressed, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Upgrades are allowed for the IDE stream's WebSocket (`GET /ide/stream`).
        let conn = http
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            )
            .with_upgrades();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // On shutdown, hyper closes an idle keep-alive connection and lets a response in
            // flight finish.
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            // The permit counts open connections: shutdown waits for all of them back.
            drop(permit);
        });
    }
    drop(listener);
    let all_closed = permits.acquire_many(limits.max_connections.min(u32::MAX as usize) as u32);
    tokio::select! {
        _ = all_closed => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::info!("connections still open after the grace period are dropped");
        }
    }
}

/// Logs at most once per period: for events an attacker can repeat at will (a bad signature, a
/// full server), so they cannot flood the log.
pub struct Sampled {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Sampled {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Some(number of occurrences not logged since the last line) when this one should be
    /// logged; None when it falls within the period and is only counted.
    pub fn hit(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_logs_the_first_then_counts() {
        let s = Sampled::new(Duration::from_secs(3600));
        assert_eq!(s.hit(), Some(0));
        for _ in 0..10 {
            assert_eq!(s.hit(), None);
        }
        let s = Sampled::new(Duration::ZERO);
        assert_eq!(s.hit(), Some(0));
        assert_eq!(s.hit(), Some(0));
    }
}
