//! The `dry-run` backend: runs nothing and reports exactly what an agent would have been given.

use super::{AgentInput, Backend, BackendError, Outcome, Progress};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct DryRun;

#[async_trait]
impl Backend for DryRun {
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        if cancel.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        let _ = progress
            .send(Progress::new(
                "Prepared the agent input (dry run: nothing is executed)",
            ))
            .await;
        Ok(Outcome {
            summary: input.rendered.clone(),
            dry_run: true,
            ..Outcome::default()
        })
    }
}
