//! Chime: a self-hosted team agent that chimes in only when it is wanted.
//!
//! Connectors (`slack`) verify and translate platform payloads into [`event::Event`]s and store them
//! in the [`inbox`]; the [`router`] hands each to a handler in [`handlers`]; tasks run on a
//! [`backend`] under leases ([`worker`]); every reply goes through the [`outbox`].

pub mod app;
pub mod backend;
pub mod config;
pub mod context;
pub mod db;
pub mod dispatch;
pub mod event;
pub mod failure;
pub mod final_fallback;
pub mod handlers;
pub mod ids;
pub mod inbox;
pub mod inspect;
pub mod janitor;
pub mod jobs;
pub mod lease;
pub mod local;
pub mod outbox;
pub mod reporter;
pub mod router;
pub mod server;
pub mod session;
pub mod slack;
pub mod templates;
pub mod worker;
