//! Runs the real `chime` binary, configured only through its environment and a TOML file, as an
//! operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ChimeProcess {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ChimeProcess {
    /// Starts `chime serve` and waits until /healthz answers.
    pub async fn start(
        dir: &Path,
        name: &str,
        port: u16,
        env: &[(&str, String)],
        config_toml: &str,
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chime"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("RUST_LOG", "info,sqlx=warn")
            .env("CHIME_CONFIG", &config)
            .env("CHIME_LISTEN", format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn chime");
        let p = ChimeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        p.wait_healthy().await;
        p
    }

    async fn wait_healthy(&self) {
        let start = Instant::now();
        let http = reqwest::Client::new();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chime did not become healthy; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `limit` for the exit; None if the process is still running then.
    pub async fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for ChimeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test settings for a spawned Chime: fast polling and generous proactive rate limits.
pub const FAST_CONFIG: &str = r#"
[worker]
poll_ms = 50
lease_secs = 10

# No caps on load: tests/limits.rs sets its own.
[limits]
concurrent_per_person = 0
concurrent_per_channel = 0
concurrent_per_workspace = 0
daily_per_person = 0
daily_per_channel = 0
daily_per_workspace = 0
turns_per_session = 0

[slack.rate_limits]
post_message_per_channel_per_sec = 100
tier2_per_min = 100000
tier3_per_min = 100000
tier4_per_min = 100000
"#;
