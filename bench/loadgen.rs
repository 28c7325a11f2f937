//! Ingest load generator: fires signed Slack `app_mention` deliveries at a running `chime serve`
//! (or any Slack Events endpoint, such as the Bolt-Python comparison app) over keep-alive HTTP/1.1
//! connections, one request in flight per connection (closed loop), and reports acks/s and ack
//! latency.
//!
//! Every request is signed fresh (timestamp + HMAC-SHA256 of the exact body) and carries a unique
//! `event_id` made of a run id, the connection number and a sequence number, so reruns against the
//! same database never hit the dedupe path.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/slack/events \
//!     --secret S --connections 32 --warmup 3 --duration 10
//! cargo run --release --example loadgen -- --serve 127.0.0.1:9999   # a trivial 200 server
//! ```
//!
//! Output: one human line, then one JSON line (both on stdout). `--server-pid` adds the CPU use of
//! the server process over the measured window; the generator's own CPU use is always reported so
//! that it can be shown not to be the bottleneck, and so is the rest of the machine's ("other"),
//! which shows a disturbed run. `--rate` paces the load instead of running flat out, and
//! `--timeline` writes every measured request's start and latency to a CSV file.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug, Clone)]
#[command(about = "Signed Slack app_mention load generator for Chime's ingest bench")]
struct Args {
    /// The events endpoint, e.g. http://127.0.0.1:8080/slack/events (plain HTTP only).
    #[arg(long, default_value = "http://127.0.0.1:8080/slack/events")]
    url: String,
    /// The Slack signing secret the server verifies with.
    #[arg(long, env = "SLACK_SIGNING_SECRET", default_value = "")]
    secret: String,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to measure (ignored when --requests is given).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Measure exactly this many requests instead of a fixed duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Pace the load at this many requests/s in total (spread evenly over the connections)
    /// instead of sending the next request as soon as the last one is answered. Latency is still
    /// measured from the actual send; a connection that falls behind does not burst to catch up.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of unmeasured load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Included in every event_id; random when not given.
    #[arg(long)]
    run_id: Option<String>,
    /// A name for this run in the output (e.g. "chime-sqlite").
    #[arg(long, default_value = "target")]
    label: String,
    /// Also report the CPU use of this process (the server) over the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runtime worker threads; 1 (the default) runs everything on one core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write every measured request as `start_ms,latency_us` (CSV, ms since the measured window
    /// opened) to this file, to see whether slow acks cluster in time.
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
    /// Instead of generating load, serve a trivial `200 OK` on this address (to measure the
    /// generator's own ceiling).
    #[arg(long)]
    serve: Option<String>,
}

/// Shared between the connections and the clock.
struct Shared {
    /// Set (once) when the measured window opens.
    t0: std::sync::OnceLock<Instant>,
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Tickets for `--requests`: each measured request takes one first.
    tickets: AtomicU64,
    limit: Option<u64>,
    /// With `--rate`: the gap between two sends on one connection.
    interval: Option<Duration>,
    connections: usize,
}

#[derive(Default)]
struct ConnStats {
    /// Ack latency of measured requests, in microseconds.
    latencies_us: Vec<u32>,
    /// When each measured request started, in microseconds after `Shared::t0`.
    starts_us: Vec<u32>,
    ok: u64,
    /// 2xx answers over the whole run, warmup included (what the server must have stored).
    ok_total: u64,
    non_2xx: u64,
    non_2xx_total: u64,
    errors: u64,
    statuses: Vec<(u16, u64)>,
    last_error: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    match args.serve.clone() {
        Some(addr) => rt.block_on(serve_trivial(addr)),
        None => rt.block_on(run(args)),
    }
}

/// A minimal HTTP/1.1 server that answers every request with an empty 200 after reading the body.
async fn serve_trivial(addr: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("trivial server on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must be plain http://, got {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((authority.to_string(), path.to_string()))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An `app_mention` envelope shaped like tests/common `mention()` (and like Slack's).
fn mention_body(event_id: &str, channel: &str, ts: &str, now: u64, n: u64) -> String {
    format!(
        concat!(
            r#"{{"token":"legacy","team_id":"T1","api_app_id":"A1","type":"event_callback","#,
            r#""event_id":"{eid}","event_time":{now},"event":{{"type":"app_mention","user":"UBENCH","#,
            r#""text":"<@UBOT> bench request {n}: the retry client drops the last chunk on timeout","#,
            r#""ts":"{ts}","channel":"{ch}","event_ts":"{ts}","team":"T1"}},"#,
            r#""authorizations":[{{"enterprise_id":null,"team_id":"T1","user_id":"UBOT","is_bot":true}}]}}"#
        ),
        eid = event_id,
        now = now,
        ts = ts,
        ch = channel,
        n = n
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (authority, path) = parse_url(&args.url)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..10].to_string());
    let secret = SecretString::from(args.secret.clone());
    let shared = Arc::new(Shared {
        t0: std::sync::OnceLock::new(),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        tickets: AtomicU64::new(0),
        limit: args.requests,
        interval: args
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r)),
        connections: args.connections.max(1),
    });

    // Connect everything first, so connection setup is not part of any measurement.
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }

    let mut handles = Vec::with_capacity(args.connections);
    for (c, sender) in senders.into_iter().enumerate() {
        let shared = shared.clone();
        let (authority, path, run_id, secret) = (
            authority.clone(),
            path.clone(),
            run_id.clone(),
            secret.clone(),
        );
        handles.push(tokio::spawn(async move {
            connection(c, sender, shared, authority, path, run_id, secret).await
        }));
    }

    let self_cpu0 = self_cpu_secs();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let t0 = Instant::now();
    let self_cpu1 = self_cpu_secs();
    let server_cpu1 = args.server_pid.and_then(proc_cpu_secs);
    let machine1 = machine_jiffies();
    let _ = shared.t0.set(t0);
    shared.measuring.store(true, Ordering::SeqCst);
    if args.requests.is_some() {
        // The connections stop themselves once the tickets run out.
        while !handles.iter().all(|h| h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    }
    shared.stop.store(true, Ordering::SeqCst);
    let mut all = ConnStats::default();
    let mut timeline: Vec<(u32, u32)> = Vec::new();
    for h in handles {
        let s = h.await?;
        if args.timeline.is_some() {
            timeline.extend(
                s.starts_us
                    .iter()
                    .copied()
                    .zip(s.latencies_us.iter().copied()),
            );
        }
        all.latencies_us.extend(s.latencies_us);
        all.ok += s.ok;
        all.ok_total += s.ok_total;
        all.non_2xx_total += s.non_2xx_total;
        all.non_2xx += s.non_2xx;
        all.errors += s.errors;
        for (code, n) in s.statuses {
            match all.statuses.iter_mut().find(|(c, _)| *c == code) {
                Some(e) => e.1 += n,
                None => all.statuses.push((code, n)),
            }
        }
        if s.last_error.is_some() {
            all.last_error = s.last_error;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let self_cpu2 = self_cpu_secs();
    let server_cpu2 = args.server_pid.and_then(proc_cpu_secs);
    let machine2 = machine_jiffies();
    // Busy cores over the window, all processes together (this one, the server, anything else).
    let machine_busy = match (machine1, machine2) {
        (Some((t1, i1)), Some((t2, i2))) if t2 > t1 => {
            Some((1.0 - (i2 - i1) as f64 / (t2 - t1) as f64) * num_online_cpus() as f64)
        }
        _ => None,
    };

    if let Some(path) = &args.timeline {
        use std::io::Write;
        timeline.sort_unstable();
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (start, lat) in &timeline {
            writeln!(f, "{:.3},{lat}", *start as f64 / 1000.0)?;
        }
    }
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * lat.len() as f64).ceil() as usize;
        lat[i.clamp(1, lat.len()) - 1] as f64 / 1000.0
    };
    let requests = lat.len() as u64;
    let acks_per_s = all.ok as f64 / elapsed;
    let gen_cpu = (self_cpu2 - self_cpu1) / elapsed;
    let _ = self_cpu0;
    let server_cpu = match (server_cpu1, server_cpu2) {
        (Some(a), Some(b)) => Some((b - a) / elapsed),
        _ => None,
    };
    let (p50, p90, p99, max) = (pct(50.0), pct(90.0), pct(99.0), pct(100.0));
    let statuses: Vec<String> = all
        .statuses
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect();
    let other = match (machine_busy, server_cpu) {
        (Some(m), Some(s)) => Some((m - s - gen_cpu).max(0.0)),
        _ => None,
    };
    println!(
        "{label}: {requests} requests in {elapsed:.2}s, {ok} 2xx, {non2xx} non-2xx, {errors} errors (whole run incl. warmup: {ok_total} 2xx, {non2xx_total} non-2xx) | {acks_per_s:.0} acks/s | p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms | c={c}{paced} | loadgen CPU {gen:.0}%{server}{other}",
        label = args.label,
        ok = all.ok,
        non2xx = all.non_2xx,
        ok_total = all.ok_total,
        non2xx_total = all.non_2xx_total,
        errors = all.errors,
        c = args.connections,
        paced = args
            .rate
            .map(|r| format!(", paced at {r:.0}/s"))
            .unwrap_or_default(),
        gen = gen_cpu * 100.0,
        server = server_cpu
            .map(|s| format!(
                ", server CPU {:.0}% ({:.1} us per ack)",
                s * 100.0,
                s * elapsed * 1e6 / (all.ok.max(1) as f64)
            ))
            .unwrap_or_default(),
        other = other
            .map(|o| format!(", other processes {:.0}% of a core", o * 100.0))
            .unwrap_or_default(),
    );
    if let Some(e) = &all.last_error {
        println!("{}: last error: {e}", args.label);
    }
    let json = serde_json::json!({
        "label": args.label,
        "url": args.url,
        "run_id": run_id,
        "connections": args.connections,
        "rate": args.rate,
        "elapsed_s": elapsed,
        "requests": requests,
        "ok_2xx": all.ok,
        "ok_2xx_total": all.ok_total,
        "non_2xx": all.non_2xx,
        "non_2xx_total": all.non_2xx_total,
        "errors": all.errors,
        "statuses": statuses,
        "acks_per_s": acks_per_s,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": max,
        "loadgen_cpu": gen_cpu,
        "server_cpu": server_cpu,
        "server_cpu_us_per_ack": server_cpu.map(|s| s * elapsed * 1e6 / (all.ok.max(1) as f64)),
        "machine_busy_cores": machine_busy,
        "other_cpu": other,
    });
    println!("{json}");
    Ok(())
}

async fn connection(
    c: usize,
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    shared: Arc<Shared>,
    authority: String,
    path: String,
    run_id: String,
    secret: SecretString,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let channel = format!("CB{run_id}{c:02}");
    let mut seq: u64 = 0;
    // Connections are staggered over one interval so that paced sends are spread out.
    let mut next = shared
        .interval
        .map(|i| tokio::time::Instant::now() + i.mul_f64(c as f64 / shared.connections as f64));
    loop {
        if let (Some(at), Some(interval)) = (next.as_mut(), shared.interval) {
            tokio::time::sleep_until(*at).await;
            let now = tokio::time::Instant::now();
            *at += interval;
            if *at < now {
                *at = now;
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let measured = shared.measuring.load(Ordering::Relaxed);
        if measured {
            if let Some(limit) = shared.limit {
                if shared.tickets.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
            }
        }
        seq += 1;
        let now = unix_secs();
        let event_id = format!("Ev{run_id}c{c:02}n{seq:08}");
        let message_ts = format!("{now}.{:06}", seq % 1_000_000);
        let body = mention_body(&event_id, &channel, &message_ts, now, seq);
        let ts = now.to_string();
        let signature = chime::slack::verify::sign(&secret, &ts, body.as_bytes());
        let req = Request::post(path.as_str())
            .header("host", authority.as_str())
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        if sender.ready().await.is_err() {
            stats.errors += 1;
            stats.last_error = Some("connection closed".into());
            break;
        }
        let started = Instant::now();
        let result = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        }
        .await;
        let took = started.elapsed();
        match &result {
            Ok(status) if status.is_success() => stats.ok_total += 1,
            Ok(_) => stats.non_2xx_total += 1,
            Err(_) => {}
        }
        if !measured {
            if let Err(e) = result {
                stats.errors += 1;
                stats.last_error = Some(e.to_string());
                break;
            }
            continue;
        }
        match result {
            Ok(status) => {
                stats
                    .latencies_us
                    .push(took.as_micros().min(u32::MAX as u128) as u32);
                if let Some(t0) = shared.t0.get() {
                    let at = started.saturating_duration_since(*t0).as_micros();
                    stats.starts_us.push(at.min(u32::MAX as u128) as u32);
                }
                if status.is_success() {
                    stats.ok += 1;
                } else {
                    stats.non_2xx += 1;
                }
                let code = status.as_u16();
                match stats.statuses.iter_mut().find(|(s, _)| *s == code) {
                    Some(e) => e.1 += 1,
                    None => stats.statuses.push((code, 1)),
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats.last_error = Some(e.to_string());
                break;
            }
        }
    }
    stats
}

/// CPU seconds (user + system) this process has used.
fn self_cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + system) of another process, from /proc/PID/stat.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tick.max(1.0))
}

/// (total, idle + iowait) jiffies of all CPUs, from the first line of /proc/stat.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((v.iter().sum(), v.get(3)? + v.get(4)?))
}

/// CPUs online (not just the ones this process may run on).
fn num_online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}
