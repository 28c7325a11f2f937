//! A turn's plan: the steps its agent has taken, each pending, in progress, complete or failed.
//! Milestones from the backend move it on; it is kept on the task, so a turn resumed on another
//! replica continues the same list, and surfaces show it whole (Slack's streamed task updates,
//! Linear's session plan, the playground). Every update replaces the whole list, which makes
//! skipping an intermediate update harmless.

use crate::backend::Progress;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

/// At most this many steps are kept (the oldest finished ones give way).
const MAX_STEPS: usize = 20;
/// How long a step's title and output may be.
const TITLE_CHARS: usize = 150;
const OUTPUT_CHARS: usize = 700;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    InProgress,
    Complete,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Stable within the turn (`s1`, `s2`…), so an update names the step it changes.
    pub id: String,
    pub title: String,
    pub status: StepStatus,
    /// What the step produced, when it says (a command's output tail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The number of steps ever added (ids stay unique after old ones are dropped).
    #[serde(default)]
    pub added: u32,
}

impl Plan {
    /// The plan a turn starts with: one step, in progress, until the agent says more.
    pub fn starting() -> Self {
        let mut plan = Plan::default();
        plan.push("Starting", StepStatus::InProgress, None);
        plan
    }

    fn push(&mut self, title: &str, status: StepStatus, output: Option<String>) {
        self.added += 1;
        self.steps.push(Step {
            id: format!("s{}", self.added),
            title: crate::templates::one_line(title, TITLE_CHARS),
            status,
            output,
        });
        while self.steps.len() > MAX_STEPS {
            match self
                .steps
                .iter()
                .position(|s| s.status != StepStatus::InProgress)
            {
                Some(i) => self.steps.remove(i),
                None => self.steps.remove(0),
            };
        }
    }

    fn in_progress(&mut self) -> Option<&mut Step> {
        self.steps
            .iter_mut()
            .rev()
            .find(|s| s.status == StepStatus::InProgress)
    }

    /// A milestone: the step in progress is complete, and the milestone is the next step (in
    /// progress, or already over when it reports a command that ran, whose "Running" step it
    /// replaces). Its first line is the title; a fenced block after it is the output.
    pub fn advance(&mut self, p: &Progress) {
        let (title, output) = split(&p.text);
        match p.ended {
            None => {
                if let Some(s) = self.in_progress() {
                    s.status = StepStatus::Complete;
                }
                self.push(&title, StepStatus::InProgress, output);
            }
            Some(failed) => {
                let status = if failed {
                    StepStatus::Error
                } else {
                    StepStatus::Complete
                };
                let title = crate::templates::one_line(&title, TITLE_CHARS);
                match self.in_progress() {
                    Some(s) if s.title.starts_with("Running ") => {
                        s.title = title;
                        s.status = status;
                        s.output = output;
                    }
                    Some(s) => {
                        s.status = StepStatus::Complete;
                        self.push(&title, status, output);
                    }
                    None => self.push(&title, status, output),
                }
            }
        }
    }

    /// The plan as a finished turn leaves it: the step still in progress completes when the turn
    /// succeeded and fails otherwise; steps never reached stay pending.
    pub fn finished(&self, succeeded: bool) -> Plan {
        let mut plan = self.clone();
        for s in &mut plan.steps {
            if s.status == StepStatus::InProgress {
                s.status = if succeeded {
                    StepStatus::Complete
                } else {
                    StepStatus::Error
                };
            }
        }
        plan
    }

    /// What a surface shows of `task`'s plan: as it stands while the turn runs, as it ended once
    /// the turn did (a turn that has not reported yet shows its first step).
    pub fn shown(task: &super::Task) -> Plan {
        let plan = task.plan.clone().unwrap_or_else(Plan::starting);
        match task.state {
            super::TaskState::Succeeded => plan.finished(true),
            super::TaskState::Failed | super::TaskState::Cancelled => plan.finished(false),
            _ => plan,
        }
    }

    /// The task's plan as last saved (a task without one starts afresh).
    pub async fn load(conn: &mut AnyConnection, task: &crate::ids::TaskId) -> anyhow::Result<Plan> {
        let raw: Option<String> = sqlx::query_scalar("SELECT plan FROM tasks WHERE id = $1")
            .bind(task.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
        Ok(raw
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_else(Plan::starting))
    }

    pub async fn save(
        &self,
        conn: &mut AnyConnection,
        task: &crate::ids::TaskId,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE tasks SET plan = $1 WHERE id = $2")
            .bind(serde_json::to_string(self)?)
            .bind(task.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// A milestone's title (its first line) and output (a fenced block after it, fences dropped).
fn split(text: &str) -> (String, Option<String>) {
    let mut lines = text.trim().lines();
    let title = lines.next().unwrap_or_default().trim().to_string();
    let rest: Vec<&str> = lines.filter(|l| l.trim() != "```").collect();
    let rest = rest.join("\n");
    let rest = rest.trim();
    let output = (!rest.is_empty()).then(|| crate::templates::truncate_chars(rest, OUTPUT_CHARS));
    (title, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(text: &str, failed: bool) -> Progress {
        Progress {
            text: text.into(),
            ended: Some(failed),
        }
    }

    #[test]
    fn milestones_tick_steps_over() {
        let mut plan = Plan::starting();
        plan.advance(&Progress::new("Reading the code"));
        plan.advance(&Progress::new("Running `cargo test`"));
        plan.advance(&ended(
            "Ran `cargo test` → exit 101\n```\ntest a ... FAILED\n```",
            true,
        ));
        plan.advance(&Progress::new("Fixing it"));
        let s: Vec<(&str, StepStatus)> = plan
            .steps
            .iter()
            .map(|s| (s.title.as_str(), s.status))
            .collect();
        assert_eq!(
            s,
            [
                ("Starting", StepStatus::Complete),
                ("Reading the code", StepStatus::Complete),
                ("Ran `cargo test` → exit 101", StepStatus::Error),
                ("Fixing it", StepStatus::InProgress),
            ]
        );
        assert_eq!(plan.steps[2].output.as_deref(), Some("test a ... FAILED"));
        let done = plan.finished(true);
        assert_eq!(done.steps[3].status, StepStatus::Complete);
        assert_eq!(plan.finished(false).steps[3].status, StepStatus::Error);
    }

    #[test]
    fn bounded_with_unique_ids() {
        let mut plan = Plan::starting();
        for i in 0..100 {
            plan.advance(&Progress::new(format!("step {i}\n{}", "x".repeat(5000))));
        }
        assert_eq!(plan.steps.len(), MAX_STEPS);
        assert_eq!(plan.steps.last().unwrap().id, "s101");
        assert!(plan
            .steps
            .iter()
            .all(|s| s.output.as_ref().unwrap().chars().count() <= OUTPUT_CHARS + 1));
        let ids: std::collections::HashSet<_> = plan.steps.iter().map(|s| &s.id).collect();
        assert_eq!(ids.len(), MAX_STEPS);
    }
}
