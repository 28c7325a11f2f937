//! How Chime's answers appear in Linear: agent activities in the agent session (a `thought` at
//! once, `action`s for milestones, a `response` or `error` at the end, an `elicitation` with the
//! `select` signal to ask for a repository), or comments on an issue where agent sessions are
//! not used. Each is a [`LinearOp`] outbox row that `sender.rs` delivers.

use super::store;
use crate::binding::{Binding, LinearThread};
use crate::connector::Reporter;
use crate::guard::Guard;
use crate::ids::{RepoName, UserId};
use crate::policy::live::{Offer, OfferAnswer};
use crate::queue::outbox::{self, NewRow};
use crate::session::plan::{Plan, StepStatus};
use crate::session::{Task, TaskState};
use async_trait::async_trait;
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::AnyConnection;
use std::sync::Arc;

/// Linear shows long activities, but an answer is not a document.
const BODY_CHARS: usize = 12_000;
const PARAMETER_CHARS: usize = 300;

/// What a Linear outbox row asks the API to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LinearOp {
    /// `agentActivityCreate` in a session.
    Activity {
        session: String,
        content: Value,
        #[serde(default)]
        signal: Option<String>,
        #[serde(default)]
        signal_metadata: Option<Value>,
    },
    /// `agentSessionUpdate`: the session's links (the pull request).
    SessionUrls { session: String, urls: Vec<Link> },
    /// `agentSessionUpdate`: the session's plan, the whole list (Linear replaces it each time).
    SessionPlan {
        session: String,
        plan: Vec<PlanStep>,
    },
    /// `commentCreate` on an issue.
    Comment { issue: String, body: String },
    /// On delegation: move the issue to its team's first started state when it is not started,
    /// and (for an agent session) make Chime its delegate when it has none.
    Delegate {
        issue: String,
        #[serde(default)]
        set_delegate: bool,
    },
}

/// One step of a Linear agent session's plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub content: String,
    /// `pending`, `inProgress`, `completed` or `canceled`.
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

impl LinearOp {
    pub fn kind(&self) -> &'static str {
        match self {
            LinearOp::Activity { .. } => "activity",
            LinearOp::SessionUrls { .. } => "session_urls",
            LinearOp::SessionPlan { .. } => "session_plan",
            LinearOp::Comment { .. } => "comment",
            LinearOp::Delegate { .. } => "delegate",
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("ack", include_str!("../../templates/linear/ack.md.hbs")),
    (
        "started",
        include_str!("../../templates/linear/started.md.hbs"),
    ),
    (
        "result",
        include_str!("../../templates/linear/result.md.hbs"),
    ),
    (
        "failed",
        include_str!("../../templates/linear/failed.md.hbs"),
    ),
    (
        "stopped",
        include_str!("../../templates/linear/stopped.md.hbs"),
    ),
    (
        "ask_repo",
        include_str!("../../templates/linear/ask_repo.md.hbs"),
    ),
    (
        "heartbeat",
        include_str!("../../templates/linear/heartbeat.md.hbs"),
    ),
    (
        "notice",
        include_str!("../../templates/linear/notice.md.hbs"),
    ),
    ("link", include_str!("../../templates/linear/link.md.hbs")),
    ("plan", include_str!("../../templates/linear/plan.md.hbs")),
];

/// Text from outside as Linear Markdown shows it: no images (an image URL is fetched by every
/// reader's browser, a way to carry data out), no raw HTML, no line breaks that could pose as
/// Chime's own markup where one line is expected, and cut to `max` characters.
pub fn md(text: &str, max: usize) -> String {
    let text = crate::templates::truncate_chars(text.trim(), max);
    text.replace("![", "!\\[").replace('<', "\\<")
}

fn one_line(text: &str, max: usize) -> String {
    md(&crate::templates::one_line(text, max), max)
}

pub struct LinearReporter {
    templates: Handlebars<'static>,
    /// Scans every row this reporter writes (the output guard's outbox choke point).
    pub guard: Arc<Guard>,
}

impl LinearReporter {
    pub fn new(guard: Arc<Guard>) -> anyhow::Result<Self> {
        let mut templates = Handlebars::new();
        templates.set_strict_mode(true);
        templates.register_escape_fn(handlebars::no_escape);
        for (name, text) in TEMPLATES {
            templates.register_template_string(name, *text)?;
        }
        Ok(Self { templates, guard })
    }

    fn render(&self, name: &str, view: &Value) -> anyhow::Result<String> {
        Ok(self.templates.render(name, view)?.trim().to_string())
    }

    async fn write(
        &self,
        conn: &mut AnyConnection,
        target: &Binding,
        key: &str,
        op: LinearOp,
        ref_key: Option<&str>,
        last: bool,
    ) -> anyhow::Result<bool> {
        let row = NewRow {
            target,
            kind: op.kind(),
            op: &op,
            key,
            ref_key,
            last,
        };
        outbox::enqueue(conn, &self.guard, row).await
    }

    /// Keeps the session's plan current: every step of the task's plan with its status (a finished
    /// task's as it ended). Only an agent session has a plan; an issue's comments do not.
    async fn show_plan(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        last: bool,
    ) -> anyhow::Result<()> {
        let Binding::Linear {
            thread: LinearThread::Session(session),
            ..
        } = &task.binding
        else {
            return Ok(());
        };
        let plan = Plan::shown(task);
        let plan = plan
            .steps
            .iter()
            .map(|s| PlanStep {
                content: one_line(&self.guard.redact(&s.title, "progress"), PARAMETER_CHARS),
                status: match s.status {
                    StepStatus::Pending => "pending",
                    StepStatus::InProgress => "inProgress",
                    StepStatus::Complete => "completed",
                    StepStatus::Error => "canceled",
                }
                .into(),
            })
            .collect();
        let op = LinearOp::SessionPlan {
            session: session.clone(),
            plan,
        };
        let key = format!("task:{}:plan:{}", task.id, uuid::Uuid::new_v4().simple());
        // Each plan replaces the last: a later one queued before this is sent makes it pointless.
        let plans = format!("task:{}:plan", task.id);
        self.write(conn, &task.binding, &key, op, Some(&plans), last)
            .await?;
        Ok(())
    }

    /// Says `body` as `content_type` where `binding` is: an activity in its session, or a
    /// comment on its issue (where only `response`, `error` and `elicitation` are worth one).
    #[allow(clippy::too_many_arguments)]
    async fn say(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        content: Value,
        signal: Option<(&str, Value)>,
        ref_key: Option<&str>,
        last: bool,
    ) -> anyhow::Result<()> {
        let op = match binding {
            Binding::Linear {
                thread: LinearThread::Session(session),
                ..
            } => LinearOp::Activity {
                session: session.clone(),
                content,
                signal: signal.as_ref().map(|(s, _)| s.to_string()),
                signal_metadata: signal.map(|(_, m)| m),
            },
            Binding::Linear {
                thread: LinearThread::Issue(issue),
                ..
            } => {
                let kind = content["type"].as_str().unwrap_or_default();
                if !matches!(kind, "response" | "error" | "elicitation") {
                    return Ok(()); // A comment per milestone would be spam.
                }
                let mut body = content["body"].as_str().unwrap_or_default().to_string();
                if let Some((_, meta)) = &signal {
                    for option in meta["options"].as_array().into_iter().flatten() {
                        let value = option["value"].as_str().unwrap_or_default();
                        body.push_str(&format!("\n- `{value}`"));
                    }
                }
                LinearOp::Comment {
                    issue: issue.clone(),
                    body,
                }
            }
            other => anyhow::bail!("the Linear reporter was asked to write to {other}"),
        };
        self.write(conn, binding, key, op, ref_key, last).await?;
        Ok(())
    }

    fn status_key(task: &Task) -> String {
        format!("task:{}:status", task.id)
    }

    /// The final answer of a turn, in Linear's words.
    fn result_content(&self, task: &Task, requester: Option<String>) -> anyhow::Result<Value> {
        let repo = task.repo.as_ref().map(|r| one_line(r.as_str(), 200));
        Ok(match task.state {
            // A plan waits for its requester: an elicitation, answered by a reply.
            TaskState::Succeeded if task.mode == crate::session::TurnMode::Plan => {
                let outcome = task.outcome.clone().unwrap_or_default();
                let summary = self.guard.redact(&outcome.summary, "result");
                let view = json!({ "summary": md(&summary, BODY_CHARS), "requester": requester });
                json!({"type": "elicitation", "body": self.render("plan", &view)?})
            }
            TaskState::Cancelled => {
                let by = task.cancelled_by.as_deref().map(|b| one_line(b, 100));
                json!({"type": "response", "body": self.render("stopped", &json!({"by": by}))?})
            }
            TaskState::Succeeded => {
                let outcome = task.outcome.clone().unwrap_or_default();
                let summary = self.guard.redact(&outcome.summary, "result");
                let view = json!({
                    "summary": md(&summary, BODY_CHARS),
                    "pr_url": outcome.pr_url.as_deref().and_then(crate::backend::valid_pr_url),
                    "diff_stat": outcome.diff_stat.as_deref().map(|d| one_line(&self.guard.redact(d, "result"), 300)),
                    "checks": outcome.checks.iter().take(8)
                        .map(|c| one_line(&self.guard.redact(&c.line(), "result"), 300))
                        .collect::<Vec<_>>(),
                    "requester": requester,
                });
                json!({"type": "response", "body": self.render("result", &view)?})
            }
            _ => {
                let error = task
                    .error
                    .as_deref()
                    .unwrap_or("the agent stopped without a result");
                let error = md(&self.guard.redact(error, "result"), 2000);
                json!({"type": "error", "body": self.render("failed", &json!({"repo": repo, "error": error}))?})
            }
        })
    }

    /// A `thought` that keeps a long run's session from going stale.
    pub async fn heartbeat(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        minutes: i64,
        key: &str,
    ) -> anyhow::Result<()> {
        let body = self.render("heartbeat", &json!({ "minutes": minutes }))?;
        let content = json!({"type": "thought", "body": body});
        self.say(conn, &task.binding, key, content, None, None, false)
            .await
    }
}

#[async_trait]
impl Reporter for LinearReporter {
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        message: &str,
    ) -> anyhow::Result<()> {
        let thread = store::thread(conn, binding).await?;
        let identifier = thread
            .as_ref()
            .map_or_else(|| "the issue".to_string(), |t| t.identifier.clone());
        let body = self.render("ack", &json!({ "identifier": identifier }))?;
        let key = format!("ack:{binding}:{message}");
        let content = json!({"type": "thought", "body": body});
        self.say(conn, binding, &key, content, None, None, false)
            .await?;
        if let Some(t) = thread.filter(|t| t.delegated) {
            // A plain assignment already names Chime as the assignee: no delegate then.
            let set_delegate = matches!(
                binding,
                Binding::Linear {
                    thread: LinearThread::Session(_),
                    ..
                }
            );
            let op = LinearOp::Delegate {
                issue: t.issue_id,
                set_delegate,
            };
            self.write(
                conn,
                binding,
                &format!("delegate:{binding}"),
                op,
                None,
                false,
            )
            .await?;
        }
        Ok(())
    }

    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let view = json!({
            "repo": task.repo.as_ref().map(|r| one_line(r.as_str(), 200)),
            "backend": one_line(&task.backend, 60),
        });
        let content = json!({
            "type": "action",
            "action": "Working in",
            "parameter": self.render("started", &view)?,
        });
        self.say(
            conn,
            &task.binding,
            &Self::status_key(task),
            content,
            None,
            None,
            false,
        )
        .await
    }

    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()> {
        let progress = self.guard.redact(progress, "progress");
        let content = json!({
            "type": "action",
            "action": "Progress",
            "parameter": one_line(&progress, PARAMETER_CHARS),
        });
        let key = format!(
            "task:{}:progress:{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        );
        // Tied to the status key and not last: a later milestone (or the answer) queued before
        // this one is sent makes it pointless, so a burst of progress costs one activity.
        let status = Self::status_key(task);
        self.say(
            conn,
            &task.binding,
            &key,
            content,
            None,
            Some(&status),
            false,
        )
        .await?;
        self.show_plan(conn, task, false).await
    }

    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        self.show_plan(conn, task, true).await?;
        let pr = task
            .outcome
            .as_ref()
            .and_then(|o| o.pr_url.as_deref())
            .and_then(crate::backend::valid_pr_url);
        if let (
            Some(url),
            Binding::Linear {
                thread: LinearThread::Session(session),
                ..
            },
        ) = (pr, &task.binding)
        {
            let op = LinearOp::SessionUrls {
                session: session.clone(),
                urls: vec![Link {
                    label: "Pull request".into(),
                    url,
                }],
            };
            let key = format!("task:{}:urls", task.id);
            self.write(conn, &task.binding, &key, op, None, false)
                .await?;
        }
        // Linear activities name the human who asked.
        let requester = store::person(conn, &task.requester)
            .await?
            .map(|(name, _)| one_line(&name, 100));
        let content = self.result_content(task, requester)?;
        let (key, status) = (format!("task:{}:final", task.id), Self::status_key(task));
        // A plan offers its approval as the one option to pick; any other reply revises it.
        let signal = (content["type"] == "elicitation")
            .then(|| ("select", json!({ "options": [{ "value": "approve" }] })));
        self.say(
            conn,
            &task.binding,
            &key,
            content,
            signal,
            Some(&status),
            true,
        )
        .await
    }

    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()> {
        let thread = store::thread(conn, &task.binding).await?;
        let identifier = thread.map_or_else(|| "this issue".into(), |t| t.identifier);
        let body = self.render("ask_repo", &json!({ "identifier": identifier }))?;
        let options: Vec<Value> = repos
            .iter()
            .take(50)
            .map(|r| json!({ "value": r.as_str() }))
            .collect();
        let content = json!({"type": "elicitation", "body": body});
        let signal = ("select", json!({ "options": options }));
        self.say(
            conn,
            &task.binding,
            &Self::status_key(task),
            content,
            Some(signal),
            None,
            false,
        )
        .await
    }

    async fn tell(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        _to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        let body = self.render("notice", &json!({ "text": md(text, 2000) }))?;
        let content = json!({"type": "response", "body": body});
        self.say(conn, binding, key, content, None, None, false)
            .await
    }

    async fn show_mirrored(
        &self,
        conn: &mut AnyConnection,
        at: &Binding,
        task: &Task,
        origin: &str,
        result: bool,
    ) -> anyhow::Result<()> {
        // Both places on one issue (its agent session and its comments): Linear already shows
        // the session's answers on the issue.
        if task.binding.surface() == at.surface() {
            let here = store::thread(conn, at).await?.map(|t| t.issue_id);
            let there = store::thread(conn, &task.binding)
                .await?
                .map(|t| t.issue_id);
            if here.is_some() && here == there {
                return Ok(());
            }
        }
        let mut task = task.clone();
        if let Some(o) = &mut task.outcome {
            o.summary = self.guard.redact(&o.summary, "result").into_owned();
        }
        let Some(text) = crate::session::links::mirrored_text(&task, origin, result) else {
            return Ok(());
        };
        let body = self.render("notice", &json!({ "text": md(&text, BODY_CHARS) }))?;
        let content = json!({"type": "response", "body": body});
        let key = format!("task:{}:mirror:{at}", task.id);
        self.say(conn, at, &key, content, None, None, false).await
    }

    /// The `auth` signal: Linear shows the person a button to the page that links their account.
    async fn ask_to_link(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        _to: &UserId,
        url: &str,
    ) -> anyhow::Result<()> {
        let body = self.render("link", &json!({ "url": url }))?;
        let content = json!({"type": "elicitation", "body": body});
        let signal = ("auth", json!({ "url": url }));
        self.say(conn, binding, key, content, Some(signal), None, false)
            .await
    }

    /// Linear gets no suggestions: Chime speaks there only when someone hands it work.
    async fn offer(&self, _conn: &mut AnyConnection, offer: &Offer) -> anyhow::Result<()> {
        tracing::debug!(binding = %offer.binding, "no suggestions in Linear");
        Ok(())
    }

    async fn offer_answered(
        &self,
        _conn: &mut AnyConnection,
        _offer: &Offer,
        _answer: &OfferAnswer,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}
