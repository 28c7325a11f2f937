//! The agent's sandbox: bubblewrap (`bwrap`) with new pid, ipc, uts (and, for `no-network`, net)
//! namespaces, no capabilities, and a filesystem of its own built from an empty root.
//!
//! # What the agent sees
//!
//! | path | how |
//! |---|---|
//! | `/usr`, `/bin`, `/sbin`, `/lib*` | read-only (symlinks stay symlinks on merged-/usr systems) |
//! | `/etc` | only the entries in [`ETC_READ_ONLY`], read-only: name resolution, users and groups without passwords, CA certificates, the dynamic linker's cache, `alternatives`. Not `shadow`, not `ssl/private`, not SSH host keys, not whatever else an operator keeps there (a `/etc/chime/` config, say) |
//! | `/proc` | the new pid namespace's: the agent, its children and bwrap's init, nothing else |
//! | `/dev` | a minimal one (`null`, `zero`, `random`, `urandom`, `tty`, `pts`, `shm`) |
//! | `/tmp`, `/var/tmp` | private, empty, gone after the turn |
//! | its worktree (or scratch directory) | read-write, at its real path |
//! | its home (`<workdir>/homes/<session>`, `$HOME`) | read-write, kept for the session's later turns |
//! | its repository's mirror | read-only, except what git needs to commit on the session's branch (below) |
//! | the agent's executable, `sandbox_read_only` paths | read-only |
//!
//! Everything else is absent: Chime's working directory and its database file, the config file,
//! the rest of the workdir (other sessions' worktrees, homes and scratch directories, other
//! repositories' mirrors), `/home`, `/root`, `/run`, `/var`, `/sys`. Chime's own process is in
//! another pid namespace, and bwrap gets only the agent's environment, so neither
//! `/proc/<pid>/environ` nor anything else carries Chime's secrets. With `sandbox = "none"`,
//! none of this holds: the agent runs as Chime's user, beside Chime.
//!
//! # The mirror
//!
//! A worktree's `.git` file points into the shared mirror (`<mirror>/worktrees/<name>`), and git
//! inside the worktree needs the mirror's objects and refs. The mirror is bound read-only, its
//! `worktrees/` directory is hidden but for the session's own entry, and only these stay writable:
//! the session's own `worktrees/<name>` (index, HEAD; its `commondir` and `gitdir` pointers and the
//! worktree's `.git` file are read-only, so the agent cannot redirect git to a config of its own),
//! `objects/` (new commits), `refs/heads/chime/` and `logs/refs/heads/chime/` (the session branch).
//! So the agent cannot touch the mirror's config, hooks, upstream branches or `packed-refs`, but
//! it can read every object of its repository (other sessions' commits on the same repository
//! included, if it goes looking), and it could rewrite another session's `chime/*` branch of the
//! same repository. A scratch directory's `.git` is read-only as a whole.

use super::git::worktree_gitdir;
use crate::config::SandboxMode;
use anyhow::Context;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The system directories every program needs, read-only.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The entries of `/etc` the agent sees. Anything secret (`shadow`, `gshadow`, `ssl/private`, SSH
/// host keys, `sudoers`) or Chime's (a config kept under `/etc`) is left out; an agent that needs
/// more gets it through `sandbox_read_only`.
pub const ETC_READ_ONLY: [&str; 33] = [
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "gai.conf",
    "gitconfig",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "localtime",
    "magic",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki/ca-trust",
    "pki/tls/certs",
    "profile",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
];

/// One mount on top of the system view, applied in order (later ones cover earlier ones).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mount {
    ReadOnly(PathBuf),
    Writable(PathBuf),
    /// An empty tmpfs over a directory, to hide what is in it.
    Hidden(PathBuf),
}

/// How a backend runs its agent; see the module documentation.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub mode: SandboxMode,
    /// Extra paths the agent may read (agent installs, credentials directories).
    pub read_only: Vec<PathBuf>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            mode: SandboxMode::Bwrap,
            read_only: vec![],
        }
    }
}

/// What the sandbox shows of a worktree and its mirror: see "The mirror" above.
pub(super) async fn worktree_mounts(mirror: &Path, worktree: &Path) -> anyhow::Result<Vec<Mount>> {
    let gitdir = worktree_gitdir(mirror, worktree)?;
    let writable = [
        mirror.join("objects"),
        mirror.join("refs/heads/chime"),
        mirror.join("logs/refs/heads/chime"),
    ];
    for dir in &writable {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut mounts = vec![
        Mount::ReadOnly(mirror.to_path_buf()),
        Mount::Hidden(mirror.join("worktrees")),
        Mount::Writable(gitdir.clone()),
    ];
    mounts.extend(writable.into_iter().map(Mount::Writable));
    for pointer in ["commondir", "gitdir"] {
        let path = gitdir.join(pointer);
        if path.exists() {
            mounts.push(Mount::ReadOnly(path));
        }
    }
    mounts.push(Mount::Writable(worktree.to_path_buf()));
    mounts.push(Mount::ReadOnly(worktree.join(".git")));
    Ok(mounts)
}

/// Where bwrap is, if anywhere on `PATH`.
pub fn find_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The error a missing bwrap gives, for the thread and for `check-config`.
pub fn not_installed(backend: &str) -> String {
    format!(
        "bubblewrap is not installed (no `bwrap` on PATH), and backend {backend} runs its agent in it: \
         install it (Debian/Ubuntu: apt install bubblewrap) or set sandbox = \"none\" in [backends.{backend}]"
    )
}

impl Sandbox {
    pub fn is_sandboxed(&self) -> bool {
        self.mode != SandboxMode::None
    }

    /// The command that runs `argv` in `cwd` with exactly `env`, sandboxed unless the mode is
    /// `none`. `Err` carries a message for the requester.
    pub(super) fn command(
        &self,
        backend: &str,
        argv: &[String],
        cwd: &Path,
        mounts: &[Mount],
        env: &[(OsString, OsString)],
    ) -> Result<Command, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| format!("backend {backend} has an empty command"))?;
        let mut cmd = if self.is_sandboxed() {
            // bwrap would fail binding a missing executable with a message about bind mounts.
            if Path::new(program).is_absolute() {
                std::fs::metadata(program)
                    .map_err(|e| format!("cannot start the agent command {program:?}: {e}"))?;
            }
            let bwrap = find_bwrap().ok_or_else(|| not_installed(backend))?;
            let mut cmd = Command::new(bwrap);
            cmd.args(self.bwrap_args(program, cwd, mounts))
                .arg("--")
                .arg(program)
                .args(args);
            cmd
        } else {
            let mut cmd = Command::new(program);
            cmd.args(args).current_dir(cwd);
            cmd
        };
        // bwrap passes its own environment on to the agent, so it gets the agent's and nothing
        // else. This rather than `--clearenv` and `--setenv`: those would put the backend's `env`
        // values (API keys) on bwrap's command line, which every user of the host can read.
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// bwrap's options, up to (not including) `--`.
    fn bwrap_args(&self, program: &str, cwd: &Path, mounts: &[Mount]) -> Vec<OsString> {
        let mut a = Args::default();
        a.flags(&[
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            // Chime may run as real root, where bwrap needs no user namespace and would hand its
            // capabilities on to the agent.
            "--cap-drop",
            "ALL",
        ]);
        if self.mode == SandboxMode::NoNetwork {
            a.flags(&["--unshare-net"]);
        }
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::read_link(path) {
                Ok(target) => a.op("--symlink", &target, path),
                Err(_) if path.is_dir() => a.op("--ro-bind", path, path),
                Err(_) => {}
            }
        }
        for entry in ETC_READ_ONLY {
            let path = Path::new("/etc").join(entry);
            a.op("--ro-bind-try", &path, &path);
        }
        a.flags(&["--proc", "/proc", "--dev", "/dev"]);
        a.flags(&["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]);
        // The agent's executable, when it lives outside the system directories (an absolute
        // path); one found through PATH must be in a directory the sandbox shows.
        let program = Path::new(program);
        if program.is_absolute() && !SYSTEM_DIRS.iter().any(|d| program.starts_with(d)) {
            a.op("--ro-bind", program, program);
        }
        for path in &self.read_only {
            a.op("--ro-bind-try", path, path);
        }
        for mount in mounts {
            match mount {
                Mount::ReadOnly(p) => a.op("--ro-bind", p, p),
                Mount::Writable(p) => a.op("--bind", p, p),
                Mount::Hidden(p) => a.op1("--tmpfs", p),
            }
        }
        a.op1("--chdir", cwd);
        a.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn op1(&mut self, op: &str, path: &Path) {
        self.0.push(op.into());
        self.0.push(path.into());
    }

    fn op(&mut self, op: &str, from: &Path, to: &Path) {
        self.0.push(op.into());
        self.0.push(from.into());
        self.0.push(to.into());
    }
}

/// Whether a bwrap failure (exit status 1, its own `bwrap: …` message) ended the turn rather
/// than the agent, and if so what to tell the requester.
pub(super) fn setup_failure(backend: &str, code: Option<i32>, stderr: &str) -> Option<String> {
    let message = stderr.trim();
    (code == Some(1) && message.starts_with("bwrap: ")).then(|| {
        format!(
            "the sandbox could not start the agent: {message}. Inside it the agent sees only the system \
             directories, its worktree, its home and the paths in sandbox_read_only of [backends.{backend}] \
             (see the README on the sandbox)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sandbox: &Sandbox, program: &str, mounts: &[Mount]) -> Vec<String> {
        sandbox
            .bwrap_args(program, Path::new("/w/worktrees/s/a/b"), mounts)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has(args: &[String], window: &[&str]) -> bool {
        args.windows(window.len()).any(|w| w == window)
    }

    #[test]
    fn namespaces_capabilities_and_network() {
        let sandbox = Sandbox::default();
        let a = args(&sandbox, "codex", &[]);
        for flag in [
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
        ] {
            assert!(a.iter().any(|x| x == flag), "{flag} missing: {a:?}");
        }
        assert!(has(&a, &["--cap-drop", "ALL"]));
        assert!(!a.iter().any(|x| x == "--unshare-net"));
        assert!(has(&a, &["--chdir", "/w/worktrees/s/a/b"]));
        let no_net = Sandbox {
            mode: SandboxMode::NoNetwork,
            read_only: vec![],
        };
        assert!(args(&no_net, "codex", &[])
            .iter()
            .any(|x| x == "--unshare-net"));
    }

    #[test]
    fn nothing_secret_from_etc() {
        for secret in ["shadow", "gshadow", "ssl", "ssh", "sudoers", "chime"] {
            assert!(!ETC_READ_ONLY.contains(&secret), "{secret}");
        }
        let a = args(&Sandbox::default(), "codex", &[]);
        assert!(!has(&a, &["--ro-bind", "/etc", "/etc"]), "{a:?}");
        assert!(has(
            &a,
            &["--ro-bind-try", "/etc/ssl/certs", "/etc/ssl/certs"]
        ));
    }

    #[test]
    fn executable_and_extra_paths_are_read_only() {
        let sandbox = Sandbox {
            mode: SandboxMode::Bwrap,
            read_only: vec!["/opt/codex".into()],
        };
        let a = args(&sandbox, "/srv/agents/run.sh", &[]);
        assert!(has(
            &a,
            &["--ro-bind", "/srv/agents/run.sh", "/srv/agents/run.sh"]
        ));
        assert!(has(&a, &["--ro-bind-try", "/opt/codex", "/opt/codex"]));
        // Under /usr it is there already; a bare name is looked up on PATH inside.
        let a = args(&sandbox, "/usr/bin/codex", &[]);
        assert!(!has(&a, &["--ro-bind", "/usr/bin/codex", "/usr/bin/codex"]));
    }

    #[test]
    fn mounts_keep_their_order() {
        let mounts = [
            Mount::ReadOnly("/w/m.git".into()),
            Mount::Hidden("/w/m.git/worktrees".into()),
            Mount::Writable("/w/m.git/worktrees/b".into()),
        ];
        let a = args(&Sandbox::default(), "codex", &mounts);
        let at = |x: &str| a.iter().position(|y| y == x).unwrap();
        assert!(at("/w/m.git") < at("/w/m.git/worktrees"));
        assert!(at("/w/m.git/worktrees") < at("/w/m.git/worktrees/b"));
        assert!(has(&a, &["--tmpfs", "/w/m.git/worktrees"]));
    }

    #[test]
    fn setup_failures_are_told_apart() {
        assert!(setup_failure("codex", Some(1), "bwrap: execvp codex: No such file").is_some());
        assert!(setup_failure("codex", Some(1), "error: tests failed").is_none());
        assert!(setup_failure("codex", Some(2), "bwrap: x").is_none());
    }
}
