//! git for the `command` backend: mirrors, worktrees, scratch repositories and the commit
//! after each turn.
//!
//! # Chime's own git calls run nothing the agent configured
//!
//! The agent can write its worktree and (within the sandbox, see `sandbox.rs`) parts of the
//! mirror; without a sandbox it can write everything. Every git command Chime runs therefore
//! carries [`HARDENING`]: hooks off (`core.hooksPath=/dev/null`, which also covers `post-commit`,
//! `post-checkout` and `reference-transaction`, none of which `--no-verify` skips), no fsmonitor
//! daemon, no `ext::` transport, no system config (`GIT_CONFIG_NOSYSTEM=1`), and diffs with
//! `--no-ext-diff --no-textconv`. What remains: clean/smudge `filter.<driver>` programs and
//! credential helpers come from git config, which the sandbox keeps read-only to the agent
//! (the mirror's `config`, a scratch repository's whole `.git`); with `sandbox = "none"` an agent
//! that rewrites that config can still make Chime's `git add` or `git fetch` run a program of its
//! choice, which is one of the reasons that mode warns.

use super::super::AgentInput;
use anyhow::{anyhow, bail, Context};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Variables that would point git at another repository than the one named with `-C`.
const GIT_LOCATION_ENV: [&str; 5] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
];

/// `-c` options on every git call of Chime's; they win over any repository config.
pub(super) const HARDENING: [&str; 6] = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
];

/// Runs `git -C <dir> <args>` and returns its stdout; the error names the command and its stderr.
pub(super) async fn git<I, S>(dir: &Path, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let output = git_output(dir, &args).await?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe_git(dir, &args),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `git -C <dir> <args>`, whatever its exit status.
async fn git_output<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
) -> anyhow::Result<std::process::Output> {
    git_output_env(dir, args, &[]).await
}

/// [`git`] with extra environment (config for one call, say, that must not show in `ps`).
pub(super) async fn git_env<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    env: &[(&str, String)],
) -> anyhow::Result<String> {
    let output = git_output_env(dir, args, env).await?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe_git(dir, args),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn git_output_env<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    env: &[(&str, String)],
) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new("git");
    cmd.envs(env.iter().map(|(k, v)| (*k, v)));
    cmd.args(HARDENING).arg("-C").arg(dir).args(args);
    for var in GIT_LOCATION_ENV {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0") // fail instead of waiting for a password nobody types
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run `{}`", describe_git(dir, args)))
}

fn describe_git<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> String {
    let mut text = format!("git -C {}", dir.display());
    for arg in args {
        text.push(' ');
        text.push_str(&arg.as_ref().to_string_lossy());
    }
    text
}

/// Replaces the credentials of `url` (its `user:password@` part) wherever they appear in `text`.
pub(super) fn redact_credentials(text: &str, url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
    });
    match userinfo {
        Some(userinfo) if !userinfo.is_empty() => text.replace(&format!("{userinfo}@"), "***@"),
        _ => text.to_string(),
    }
}

/// The administrative directory of `worktree` inside `mirror` (`<mirror>/worktrees/<name>`), read
/// from the worktree's `.git` file and checked to be exactly there.
pub(super) fn worktree_gitdir(mirror: &Path, worktree: &Path) -> anyhow::Result<PathBuf> {
    let pointer = worktree.join(".git");
    let text = std::fs::read_to_string(&pointer)
        .with_context(|| format!("cannot read {}", pointer.display()))?;
    let gitdir = text
        .strip_prefix("gitdir: ")
        .map(|p| PathBuf::from(p.trim_end_matches(['\n', '\r'])))
        .ok_or_else(|| anyhow!("{} is not a worktree's .git file", pointer.display()))?;
    let in_place = gitdir.parent() == Some(mirror.join("worktrees").as_path())
        && gitdir
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| !n.starts_with('.') && !n.contains(['/', '\\']));
    if !in_place {
        bail!(
            "{} points at {}, outside {}/worktrees",
            pointer.display(),
            gitdir.display(),
            mirror.display()
        );
    }
    Ok(gitdir)
}

/// Clones `url` as a bare mirror at `mirror`, atomically: a clone that dies halfway leaves only a
/// `.partial` directory, which the next attempt removes, never a broken mirror.
pub(super) async fn clone_mirror(url: &str, mirror: &Path) -> anyhow::Result<()> {
    let parent = mirror
        .parent()
        .ok_or_else(|| anyhow!("mirror path {} has no parent", mirror.display()))?;
    tokio::fs::create_dir_all(parent)
        .await
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // git runs with `-C <mirrors dir>`, but a local path in the config is meant relative to
    // Chime's working directory.
    let url = match Path::new(url) {
        local if local.exists() => std::path::absolute(local)
            .with_context(|| format!("cannot resolve the path {url}"))?
            .into_os_string(),
        _ => url.into(),
    };
    let partial = mirror.with_extension("git.partial");
    if partial.exists() {
        tokio::fs::remove_dir_all(&partial)
            .await
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    git(
        parent,
        [
            OsStr::new("clone"),
            OsStr::new("--mirror"),
            OsStr::new("--quiet"),
            OsStr::new("--"),
            &url,
            partial.as_os_str(),
        ],
    )
    .await?;
    // With `mirror = true`, a plain `git push` by the agent would force every ref of the mirror
    // upstream and delete the branches created since the last fetch. Fetching keeps `+refs/*:refs/*`.
    git(&partial, ["config", "remote.origin.mirror", "false"]).await?;
    // Session branches exist only here: keep `fetch --prune` from deleting them, and from
    // overwriting them with a same-named upstream branch (say, after the agent pushed one).
    git(
        &partial,
        [
            "config",
            "--add",
            "remote.origin.fetch",
            "^refs/heads/chime/*",
        ],
    )
    .await?;
    tokio::fs::rename(&partial, mirror)
        .await
        .with_context(|| format!("cannot move {} into place", partial.display()))?;
    Ok(())
}

/// The first of `candidates` (commits or refs) that names a commit in `repo`.
pub(super) async fn first_commit(
    repo: &Path,
    candidates: &[String],
) -> anyhow::Result<Option<String>> {
    for c in candidates {
        // Never an option: a commit is hex, a ref starts with `refs/`.
        if c.is_empty() || c.starts_with('-') {
            continue;
        }
        let verify = format!("{c}^{{commit}}");
        if git_output(repo, &["rev-parse", "--verify", "--quiet", &verify])
            .await?
            .status
            .success()
        {
            return Ok(Some(c.clone()));
        }
    }
    Ok(None)
}

/// Checks out `branch` in a new worktree, creating the branch from `start` if it is new.
pub(super) async fn add_worktree(
    mirror: &Path,
    worktree: &Path,
    branch: &str,
    start: &str,
) -> anyhow::Result<()> {
    // A worktree directory without `.git` is the remains of an interrupted `worktree add`, and a
    // registration whose directory is gone would make `worktree add` refuse: clear both.
    if worktree.exists() {
        tokio::fs::remove_dir_all(worktree)
            .await
            .with_context(|| format!("cannot remove the broken worktree {}", worktree.display()))?;
    }
    if let Some(parent) = worktree.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    git(mirror, ["worktree", "prune"]).await?;
    let branch_ref = format!("refs/heads/{branch}");
    let exists = git_output(mirror, &["rev-parse", "--verify", "--quiet", &branch_ref])
        .await?
        .status
        .success();
    let path = worktree.as_os_str();
    if exists {
        // The session's worktree was lost but its branch survives: continue from the branch.
        git(
            mirror,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                path,
                OsStr::new(branch),
            ],
        )
        .await?;
    } else {
        let verify = format!("{start}^{{commit}}");
        if !git_output(mirror, &["rev-parse", "--verify", "--quiet", &verify])
            .await?
            .status
            .success()
        {
            bail!(
                "the mirror {} has no {start} to start from",
                mirror.display()
            );
        }
        git(
            mirror,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                OsStr::new("-b"),
                OsStr::new(branch),
                path,
                OsStr::new(start),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Drops everything not committed: what a crashed attempt left must not leak into the retry,
/// while the commits of earlier turns stay. `-ff` also removes nested repositories.
pub(super) async fn reset_worktree(dir: &Path) -> anyhow::Result<()> {
    git(dir, ["reset", "--hard", "--quiet"]).await?;
    git(dir, ["clean", "-ffdxq"]).await?;
    Ok(())
}

/// A scratch directory is a git repository too, so diff stats and commits work the same way.
pub(super) async fn prepare_scratch(dir: &Path, branch: &str) -> anyhow::Result<()> {
    if !dir.join(".git").exists() {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let initial_branch = format!("--initial-branch={branch}");
        git(dir, ["init", "--quiet", &initial_branch]).await?;
    }
    if head(dir).await.is_err() {
        // A first commit gives every turn a HEAD to diff against.
        let mut args = identity_args();
        args.extend([
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "chime: scratch space",
        ]);
        git(dir, args).await?;
    }
    reset_worktree(dir).await
}

pub(super) async fn head(dir: &Path) -> anyhow::Result<String> {
    Ok(git(dir, ["rev-parse", "HEAD"]).await?.trim().to_string())
}

/// `-c` options that make Chime's commits independent of the host's git configuration.
fn identity_args() -> Vec<&'static str> {
    vec![
        "-c",
        "user.name=Chime",
        "-c",
        "user.email=chime@localhost",
        "-c",
        "commit.gpgsign=false",
    ]
}

/// Commits whatever the agent left uncommitted, if anything.
pub(super) async fn commit_turn(dir: &Path, input: &AgentInput) -> anyhow::Result<()> {
    git(dir, ["add", "-A"]).await?;
    let staged = git_output(dir, &["diff", "--cached", "--quiet"]).await?;
    match staged.status.code() {
        Some(0) => return Ok(()), // nothing to commit
        Some(1) => {}
        _ => bail!(
            "`git -C {} diff --cached --quiet` failed ({}): {}",
            dir.display(),
            staged.status,
            String::from_utf8_lossy(&staged.stderr).trim()
        ),
    }
    let message = commit_message(input.turn_no, &input.prompt);
    let mut args = identity_args();
    args.extend(["commit", "--quiet", "--no-verify", "-m", &message]);
    git(dir, args).await?;
    Ok(())
}

fn commit_message(turn_no: i64, prompt: &str) -> String {
    let first_line = prompt.trim().lines().next().unwrap_or("").trim();
    let subject: String = first_line.chars().take(72).collect();
    format!("chime: turn {turn_no}: {subject}")
}

pub(super) async fn diff_stat(dir: &Path, before: &str, after: &str) -> anyhow::Result<String> {
    if before == after {
        return Ok("no changes".into());
    }
    let range = format!("{before}..{after}");
    // Colour, an external diff tool or a textconv program from any git config must not run or
    // leak into the stat.
    let stat = git(
        dir,
        [
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--stat",
            &range,
        ],
    )
    .await?;
    let stat = stat.trim_end();
    Ok(if stat.is_empty() {
        "no changes".into()
    } else {
        stat.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages() {
        assert_eq!(
            commit_message(2, "  Fix the bug\nmore"),
            "chime: turn 2: Fix the bug"
        );
        let long = "x".repeat(100);
        assert_eq!(
            commit_message(1, &long),
            format!("chime: turn 1: {}", "x".repeat(72))
        );
    }
    #[test]
    fn credentials_are_redacted() {
        let url = "https://x-access-token:ghs_secret@github.com/acme/api.git";
        let text = format!("cannot clone acme/api from {url}: fatal: {url} not found");
        let redacted = redact_credentials(&text, url);
        assert!(!redacted.contains("ghs_secret"), "{redacted}");
        assert!(
            redacted.contains("https://***@github.com/acme/api.git"),
            "{redacted}"
        );
        let token_only = "https://ghp_abc@github.com/acme/api";
        assert_eq!(
            redact_credentials(token_only, token_only),
            "https://***@github.com/acme/api"
        );
        assert_eq!(
            redact_credentials("git@host: no", "git@host:acme/api"),
            "git@host: no"
        );
        assert_eq!(
            redact_credentials("/srv/git/api", "/srv/git/api"),
            "/srv/git/api"
        );
    }
}
