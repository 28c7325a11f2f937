//! The setup phase of a `command` run: a repository's own script that installs dependencies and
//! warms caches, with network and the secrets its config names, before an agent that gets neither.
//!
//! The setup (`[repos."owner/name"] setup`, or the repository's committed `.chime/setup`) runs in
//! the sandbox with network, the worktree read-only, a throwaway `HOME` and `$CHIME_CACHE`
//! writable: what it leaves there is the cache. The cache is keyed by the setup's argv and script
//! and the repository's lockfiles, kept under `<workdir>/setup-cache/<owner>/<name>/<key>`, and
//! reused read-only by every later run with the same key; a changed lockfile or script makes a new
//! key, so setup runs again once. A cache is complete only with its marker file: one left by a
//! crash is made again. A setup that leaves a secret's value in its cache fails, since the agent
//! could read it there.

use super::sandbox::{Mount, Sandbox};
use crate::config::{RepoConfig, SandboxMode};
use crate::ids::RepoName;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Lockfiles that key the cache when the config lists none.
const LOCKFILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "requirements.txt",
    "Gemfile.lock",
    "go.sum",
    "composer.lock",
];
/// The committed setup script a repository may carry.
const COMMITTED: &str = ".chime/setup";
/// Marks a complete cache.
const DONE: &str = ".chime-setup-done";
/// How much of setup's output a failure shows.
const LOG_TAIL: usize = 2000;
/// Files larger than this are not searched for secrets (nor is more than this in all).
const SCAN_FILE_BYTES: u64 = 16 << 20;
const SCAN_TOTAL_BYTES: u64 = 256 << 20;

/// A repository's setup, and where its cache is.
pub(super) struct Setup {
    pub argv: Vec<String>,
    pub cache: PathBuf,
    pub secrets: Vec<String>,
}

impl Setup {
    /// The setup `worktree` needs under `config`, keyed by its script and lockfiles; None when
    /// the repository has none.
    pub fn of(
        workdir: &Path,
        repo: &RepoName,
        config: &RepoConfig,
        worktree: &Path,
    ) -> Option<Setup> {
        let argv = if !config.setup.is_empty() {
            config.setup.clone()
        } else if worktree.join(COMMITTED).is_file() {
            vec!["sh".into(), COMMITTED.into()]
        } else {
            return None;
        };
        let mut h = Sha256::new();
        for a in &argv {
            h.update(a.as_bytes());
            h.update([0]);
            // A script in the repository is part of the key by its content.
            if let Ok(body) = std::fs::read(worktree.join(a)) {
                h.update(&body);
            }
        }
        let lockfiles: Vec<String> = if config.lockfiles.is_empty() {
            LOCKFILES.iter().map(|s| s.to_string()).collect()
        } else {
            config.lockfiles.clone()
        };
        for f in &lockfiles {
            if let Ok(body) = std::fs::read(worktree.join(f)) {
                h.update(f.as_bytes());
                h.update([0]);
                h.update(&body);
            }
        }
        let key = hex::encode(&h.finalize()[..12]);
        Some(Setup {
            argv,
            cache: workdir.join("setup-cache").join(repo.as_str()).join(key),
            secrets: config.setup_secrets.clone(),
        })
    }

    pub fn is_cached(&self) -> bool {
        self.cache.join(DONE).is_file()
    }

    /// Runs the setup into its cache (the caller holds the repository's lock and bounds it in
    /// time). `Err` is the message for the requester, with the end of setup's output.
    pub async fn run(&self, sandbox: &Sandbox, worktree: &Path, home: &Path) -> Result<(), String> {
        // What a crash left is not a cache.
        let _ = tokio::fs::remove_dir_all(&self.cache).await;
        let _ = tokio::fs::remove_dir_all(home).await;
        for dir in [&self.cache, &home.to_path_buf()] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // With network (never `no-network`), like a developer's first `npm ci`.
        let sandbox = Sandbox {
            mode: match sandbox.mode {
                SandboxMode::None => SandboxMode::None,
                _ => SandboxMode::Bwrap,
            },
            read_only: sandbox.read_only.clone(),
        };
        let mounts = vec![
            Mount::ReadOnly(worktree.to_path_buf()),
            Mount::Writable(self.cache.clone()),
            Mount::Writable(home.to_path_buf()),
        ];
        let mut env: Vec<(OsString, OsString)> = super::INHERITED_ENV
            .iter()
            .filter_map(|k| Some((OsString::from(k), std::env::var_os(k)?)))
            .collect();
        env.push(("HOME".into(), home.into()));
        env.push(("CHIME_CACHE".into(), self.cache.clone().into()));
        let mut values = vec![];
        for name in &self.secrets {
            match std::env::var(name) {
                Ok(v) => {
                    values.push((name.clone(), v.clone()));
                    env.push((name.into(), v.into()));
                }
                Err(_) => {
                    return Err(format!(
                        "setup needs the secret {name}, which is not set in Chime's environment"
                    ))
                }
            }
        }
        let mut cmd = sandbox.command("setup", &self.argv, worktree, &mounts, &env)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot start the setup {:?}: {e}", self.argv[0]))?;
        let _ = tokio::fs::remove_dir_all(home).await;
        if !out.status.success() {
            let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            let _ = tokio::fs::remove_dir_all(&self.cache).await;
            return Err(format!(
                "setup failed ({}); the end of its output:\n{}",
                out.status,
                tail(&redact(&log, &values))
            ));
        }
        if let Some((name, file)) = leaked(&self.cache, &values) {
            let _ = tokio::fs::remove_dir_all(&self.cache).await;
            return Err(format!(
                "setup left the value of {name} in its cache ({file}), where the agent would read it: keep credentials out of $CHIME_CACHE"
            ));
        }
        tokio::fs::write(self.cache.join(DONE), b"")
            .await
            .map_err(|e| format!("cannot mark the setup cache done: {e}"))
    }
}

fn tail(log: &str) -> String {
    let n = log.chars().count();
    log.chars().skip(n.saturating_sub(LOG_TAIL)).collect()
}

fn redact(log: &str, values: &[(String, String)]) -> String {
    values
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .fold(log.to_string(), |l, (n, v)| {
            l.replace(v.as_str(), &format!("[{n}]"))
        })
}

/// The first secret whose value is in a file of `dir`, and the file (relative).
fn leaked(dir: &Path, values: &[(String, String)]) -> Option<(String, String)> {
    let values: Vec<_> = values.iter().filter(|(_, v)| v.len() >= 4).collect();
    if values.is_empty() {
        return None;
    }
    let mut budget = SCAN_TOTAL_BYTES;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && meta.len() <= SCAN_FILE_BYTES && meta.len() <= budget {
                budget -= meta.len();
                let Ok(body) = std::fs::read(e.path()) else {
                    continue;
                };
                for (name, v) in &values {
                    if body.windows(v.len()).any(|w| w == v.as_bytes()) {
                        let rel = e
                            .path()
                            .strip_prefix(dir)
                            .unwrap_or(&e.path())
                            .display()
                            .to_string();
                        return Some((name.clone(), rel));
                    }
                }
            }
        }
    }
    None
}
