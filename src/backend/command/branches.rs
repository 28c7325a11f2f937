//! Publishing a session's branches: pushing them to the repository they came from, and deleting
//! the ones nobody chose. Called by GitHub's outbox lane after a turn has ended, never by the
//! running turn (an agent's run must not hold credentials to push).
//!
//! Pushes go from the repository's mirror in `<workdir>/mirrors/`, so they run on the machine that
//! ran the turn, or on one sharing its workdir.

use super::git::{git, git_env, redact_credentials};
use crate::egress::Egress;
use crate::ids::RepoName;
use anyhow::{anyhow, Context};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// The bare mirror worktrees of `repo` are made from: `<workdir>/mirrors/<owner>/<name>.git`.
pub fn mirror_path(workdir: &Path, repo: &RepoName) -> PathBuf {
    let (owner, name) = repo.as_str().split_once('/').unwrap_or(("", repo.as_str()));
    workdir
        .join("mirrors")
        .join(owner)
        .join(format!("{name}.git"))
}

/// How git authenticates to the repository: GitHub's token as an HTTP header, given to git through
/// its environment (`GIT_CONFIG_*`), so it shows neither in the process list nor in the mirror's
/// config. Only for an `https://` URL on the GitHub host that `api_url` belongs to, so the token
/// never goes to another server a repository URL names.
fn auth_env(url: &str, api_url: &str, token: Option<&SecretString>) -> Vec<(&'static str, String)> {
    let Some(token) = token else {
        return vec![];
    };
    if github_host(api_url).is_none_or(|host| https_host(url) != Some(host)) {
        return vec![];
    }
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("x-access-token:{}", token.expose_secret()));
    vec![
        ("GIT_CONFIG_COUNT", "1".into()),
        ("GIT_CONFIG_KEY_0", "http.extraHeader".into()),
        (
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        ),
    ]
}

/// The host of an `https://` URL, lowercased, without a port or user info.
fn https_host(url: &str) -> Option<String> {
    let rest = url
        .get(..8)?
        .eq_ignore_ascii_case("https://")
        .then(|| &url[8..])?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The git host of a GitHub API: `api.github.com` serves `github.com`; GitHub Enterprise serves
/// its API from its own host (`https://HOST/api/v3`).
fn github_host(api_url: &str) -> Option<String> {
    let host = https_host(api_url)?;
    Some(match host.strip_prefix("api.") {
        Some(rest) if rest == "github.com" => rest.to_string(),
        _ => host,
    })
}

/// The repository URL the mirror was cloned from (its `origin`).
async fn origin(mirror: &Path) -> anyhow::Result<String> {
    Ok(git(mirror, ["remote", "get-url", "origin"])
        .await?
        .trim()
        .to_string())
}

/// A remote on the network must be allowed by `[network]`; a local path is not on it.
fn allowed(egress: &Egress, url: &str) -> anyhow::Result<()> {
    if crate::egress::host_of(url).is_some() {
        // The refusal names only the host, never the URL's credentials.
        egress.check(url)?;
    }
    Ok(())
}

fn check_branch(branch: &str) -> anyhow::Result<()> {
    let ok = branch.starts_with("chime/")
        && (7..=200).contains(&branch.len())
        && branch[6..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(())
        .ok_or_else(|| anyhow!("{branch:?} is not a branch of Chime's"))
}

/// Pushes `branch` from the mirror to the repository (a fast-forward, or a new branch).
pub async fn push_branch(
    workdir: &Path,
    repo: &RepoName,
    branch: &str,
    api_url: &str,
    token: Option<&SecretString>,
    egress: &Egress,
) -> anyhow::Result<()> {
    check_branch(branch)?;
    let mirror = mirror_path(workdir, repo);
    let url = origin(&mirror)
        .await
        .with_context(|| format!("no mirror of {repo} here to push {branch} from"))?;
    allowed(egress, &url)?;
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    git_env(
        &mirror,
        &["push", "--quiet", "origin", &spec],
        &auth_env(&url, api_url, token),
    )
    .await
    .map(drop)
    .map_err(|e| anyhow!(redact_credentials(&format!("{e:#}"), &url)))
}

/// Deletes `branches` in the repository (those that were pushed) and in the mirror, with their
/// worktrees.
pub async fn delete_branches(
    workdir: &Path,
    repo: &RepoName,
    branches: &[String],
    api_url: &str,
    token: Option<&SecretString>,
    egress: &Egress,
) -> anyhow::Result<()> {
    for b in branches {
        check_branch(b)?;
    }
    let mirror = mirror_path(workdir, repo);
    let url = origin(&mirror)
        .await
        .with_context(|| format!("no mirror of {repo} here to delete branches in"))?;
    allowed(egress, &url)?;
    let env = auth_env(&url, api_url, token);
    let redact = |e: anyhow::Error| anyhow!(redact_credentials(&format!("{e:#}"), &url));
    let mut listing = vec!["ls-remote".to_string(), "--heads".into(), "origin".into()];
    listing.extend(branches.iter().map(|b| format!("refs/heads/{b}")));
    let pushed = git_env(&mirror, &listing, &env).await.map_err(redact)?;
    let remote: Vec<&str> = pushed
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    if !remote.is_empty() {
        let mut args = vec!["push", "--quiet", "origin", "--delete"];
        args.extend(remote);
        git_env(&mirror, &args, &env).await.map_err(redact)?;
    }
    // A worktree holding the branch would keep `branch -D` from deleting it.
    let worktrees = git(&mirror, ["worktree", "list", "--porcelain"]).await?;
    let mut path = None;
    for line in worktrees.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            path = Some(p.to_string());
        } else if let Some(r) = line.strip_prefix("branch refs/heads/") {
            if let (true, Some(p)) = (branches.iter().any(|b| b == r), &path) {
                git(&mirror, ["worktree", "remove", "--force", p.as_str()]).await?;
            }
        }
    }
    for b in branches {
        let r = format!("refs/heads/{b}");
        git(&mirror, ["update-ref", "-d", r.as_str()]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_its_github_host() {
        let token = SecretString::from("ghs_secret");
        let api = "https://api.github.com";
        let has = |url: &str, api: &str| !auth_env(url, api, Some(&token)).is_empty();
        assert!(has("https://github.com/acme/api.git", api));
        assert!(has("https://GitHub.com:443/acme/api", api));
        assert!(has(
            "https://ghe.corp/acme/api.git",
            "https://ghe.corp/api/v3"
        ));
        for other in [
            "http://github.com/acme/api.git",
            "https://github.com.evil.example/acme/api",
            "https://evil.example/github.com/acme/api",
            "git@github.com:acme/api.git",
            "/srv/git/api.git",
            "https://gitlab.com/acme/api",
        ] {
            assert!(!has(other, api), "{other}");
        }
        assert!(!has("https://github.com/acme/api", "http://127.0.0.1:9/"));
        assert!(auth_env("https://github.com/a/b", api, None).is_empty());
    }

    #[test]
    fn only_chimes_branches() {
        assert!(check_branch("chime/abc-1_v2").is_ok());
        for bad in [
            "main",
            "chime/",
            "chime/../x",
            "chime/a b",
            "refs/heads/chime/a",
            "chime/a:b",
        ] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }
}
