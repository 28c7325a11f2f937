//! What the core asks of a platform. Each platform (`slack/`, `local/`, later `linear/`, `ide/`)
//! is one value behind [`Connector`]: its HTTP routes, its background ingest, its reporter (how
//! Chime's answers appear there), its sender (delivering its own outbox rows), who may use Chime
//! there, and what a thread says. The core holds them in [`Connectors`] and never names one.

use crate::backend::QuotedMessage;
use crate::binding::{Binding, Place, Surface};
use crate::event::Author;
use crate::failure::Permanent;
use crate::ids::{RepoName, UserId};
use crate::policy::live::{Offer, OfferAnswer};
use crate::queue::outbox::Deliver;
use crate::session::Task;
use async_trait::async_trait;
use axum::Router;
use sqlx::AnyConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Whether someone may start or stop work, and if not, why (shown to them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Allowed,
    Denied(String),
}

/// A conversation starter: a short title, and the message it sends as the person's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Starter {
    pub title: String,
    pub message: String,
}

/// How Chime's answers appear on one surface. Every verb writes outbox rows inside the caller's
/// transaction, so a reply exists exactly when the state change that caused it does.
#[async_trait]
pub trait Reporter: Send + Sync {
    /// Shows the requester that Chime took the request (a reaction on the message, on chat).
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        message: &str,
    ) -> anyhow::Result<()>;
    /// Posts the task's one status message.
    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()>;
    /// Shows a milestone on the status message.
    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()>;
    /// Replaces the status with the result, error or stop notice. Exactly once per task.
    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()>;
    /// Asks which repository to use (as the task's status message).
    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()>;
    /// Says something to someone where they are: refusals and other user errors. `key` makes it
    /// idempotent; `to` is addressed before the text, which is shown as plain text.
    async fn tell(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()>;
    /// Says something only `to` sees, where the surface can (Slack: an ephemeral message);
    /// elsewhere, like [`Reporter::tell`].
    async fn tell_privately(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        self.tell(conn, binding, key, to, text).await
    }
    /// Shows, at `at`, the end of a turn asked at another place of the same session (one
    /// session across tools): its result when `result`, else only its pull request when
    /// `pr_link`. `origin` names where it was asked ("Linear ENG-123", "Slack").
    async fn show_mirrored(
        &self,
        conn: &mut AnyConnection,
        at: &Binding,
        task: &Task,
        origin: &str,
        result: bool,
    ) -> anyhow::Result<()>;
    /// Shows `to`, in their own direct messages with Chime, the end of a turn they asked
    /// elsewhere (`origin`, their editor), as [`Reporter::show_mirrored`] would.
    async fn show_direct(
        &self,
        _conn: &mut AnyConnection,
        _to: &UserId,
        _task: &Task,
        _origin: &str,
        _result: bool,
    ) -> anyhow::Result<()> {
        anyhow::bail!("this surface has no direct messages")
    }
    /// Tells `to` something in their own direct messages with Chime (an admin's budget notice),
    /// once per `key`; surfaces without direct messages log it instead.
    async fn tell_directly(
        &self,
        _conn: &mut AnyConnection,
        to: &UserId,
        _key: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        tracing::warn!(%to, text, "this surface has no direct messages: not told");
        Ok(())
    }
    /// Asks `to` to link their account before Chime runs anything for them, with the page that
    /// says how (`url`).
    async fn ask_to_link(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        to: &UserId,
        url: &str,
    ) -> anyhow::Result<()> {
        let text = format!("Before I can work for you here, link your account: {url}");
        self.tell(conn, binding, key, to, &text).await
    }
    /// Shows `home` as its person's own page in `workspace` (Slack's App Home), replacing what
    /// it showed before. `key` names this showing.
    async fn show_home(
        &self,
        _conn: &mut AnyConnection,
        _workspace: &crate::ids::TeamId,
        _key: &str,
        _home: &crate::home::Home,
    ) -> anyhow::Result<()> {
        anyhow::bail!("this surface has no home page")
    }
    /// Offers `starters` at the top of a new conversation with Chime (`binding`), once per `key`.
    async fn offer_starters(
        &self,
        _conn: &mut AnyConnection,
        binding: &Binding,
        _key: &str,
        _starters: &[Starter],
    ) -> anyhow::Result<()> {
        anyhow::bail!("no starters can be offered on {}", binding.surface())
    }
    /// Posts the weekly digest (plain mrkdwn text) in `place`, once per `key`.
    async fn post_digest(
        &self,
        _conn: &mut AnyConnection,
        place: &Place,
        _key: &str,
        _text: &str,
    ) -> anyhow::Result<()> {
        anyhow::bail!("no digest can be posted on {}", place.surface())
    }
    /// Offers one suggestion where it applies, with Do it, Not now and Don't suggest this here.
    async fn offer(&self, conn: &mut AnyConnection, offer: &Offer) -> anyhow::Result<()>;
    /// Shows how the suggestion was answered, in place of its buttons.
    async fn offer_answered(
        &self,
        conn: &mut AnyConnection,
        offer: &Offer,
        answer: &OfferAnswer,
    ) -> anyhow::Result<()>;
}

/// One platform, as the core sees it.
#[async_trait]
pub trait Connector: Send + Sync {
    fn surface(&self) -> Surface;
    /// Its HTTP endpoints. `all` lets a view (the playground's Sessions) link to other surfaces.
    fn routes(&self, _all: &Arc<Connectors>) -> Router {
        Router::new()
    }
    /// Starts its background work (Socket Mode, identity lookups) until `shutdown`.
    fn start(&self, _tasks: &mut JoinSet<()>, _shutdown: &CancellationToken) {}
    fn reporter(&self) -> &dyn Reporter;
    fn sender(&self) -> Arc<dyn Deliver>;
    /// Whether this person may trigger work at `binding`.
    async fn check_member(&self, place: &Place, author: &Author) -> Membership;
    /// Opens a thread for a request asked outside any thread (`/chime <request>`): the request is
    /// posted in `place`, attributed to its author; or, when `private` or Chime cannot post there,
    /// in the author's direct conversation with Chime. `key` names the request (it is replayed
    /// after a crash). Returns the thread and its first message.
    async fn open_thread(
        &self,
        _place: &Place,
        _author: &Author,
        _text: &str,
        _private: bool,
        _key: &str,
    ) -> anyhow::Result<(Binding, String)> {
        anyhow::bail!("{} has no requests outside threads", self.surface())
    }
    /// The messages around `binding`, quoted as data for the agent; empty when unreadable.
    async fn thread_context(&self, binding: &Binding) -> Vec<QuotedMessage>;
    /// The name of the place `binding` is in (a channel's name), when the platform tells; policies
    /// may name places.
    async fn place_name(&self, _binding: &Binding) -> Option<String> {
        None
    }
    /// The repository a new session at `binding` works on, when the platform tells (a Linear
    /// issue's `repo:` line, team, project or labels); None leaves it to Chime's routing.
    async fn suggest_repo(&self, _binding: &Binding) -> Option<RepoName> {
        None
    }
    /// Where a new session at `binding` starts, when the platform knows the requester's
    /// workspace (the editor's commit and branch); None: the repository's default branch.
    async fn suggest_base(&self, _binding: &Binding) -> Option<crate::backend::Base> {
        None
    }
    /// The team `binding` belongs to, when the platform has teams (a Linear issue's team key):
    /// per-team rules (`routing.approval`) name it.
    async fn team(&self, _binding: &Binding) -> Option<String> {
        None
    }
    /// The work items `binding` is about (a Linear issue's key), as `session::links` refs.
    async fn work_items(&self, _binding: &Binding) -> Vec<String> {
        vec![]
    }
    /// Whether what is said at `binding` is private (a direct message, a private channel):
    /// nothing said there is mirrored to the session's other places, or shown to agents
    /// working for them.
    async fn is_private(&self, _binding: &Binding) -> bool {
        false
    }
    /// A person's verified email, when the platform tells (to link their accounts).
    async fn email_of(&self, _user: &str) -> Option<String> {
        None
    }
    /// A person's time zone, in minutes east of UTC, when the platform tells (quiet hours are
    /// kept in the person's own time).
    async fn utc_offset_of(&self, _user: &str) -> Option<i32> {
        None
    }
    /// The account with this verified email, when there is one.
    async fn user_by_email(&self, _email: &str) -> Option<String> {
        None
    }
    /// How a person is named in the agent's input.
    fn name_person(&self, user: &str) -> String;
    /// Whether this person may press Stop, Retry and the repository picker on anyone's task.
    fn is_admin(&self, _user: &str) -> bool {
        false
    }
    /// The admins to tell of operational news (a budget running out).
    fn admins(&self) -> Vec<UserId> {
        vec![]
    }
    /// A link a person can open to reach `binding`.
    fn link(&self, binding: &Binding) -> Option<String>;
}

/// The connectors running in this process.
#[derive(Default)]
pub struct Connectors {
    by_surface: BTreeMap<Surface, Arc<dyn Connector>>,
}

impl Connectors {
    pub fn add(&mut self, c: Arc<dyn Connector>) {
        self.by_surface.insert(c.surface(), c);
    }

    /// The connector of `surface`; a [`Permanent`] error when it is not running here.
    pub fn get(&self, surface: Surface) -> Result<&Arc<dyn Connector>, Permanent> {
        self.by_surface
            .get(&surface)
            .ok_or(Permanent::SurfaceNotRunning(surface))
    }

    pub fn for_binding(&self, b: &Binding) -> Result<&Arc<dyn Connector>, Permanent> {
        self.get(b.surface())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.by_surface.values()
    }

    pub fn is_running(&self, surface: Surface) -> bool {
        self.by_surface.contains_key(&surface)
    }

    /// A link to `binding`, from its connector when that runs here.
    pub fn link(&self, binding: &Binding) -> Option<String> {
        self.for_binding(binding).ok()?.link(binding)
    }
}
