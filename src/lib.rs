//! Chime: a self-hosted team agent that chimes in only when it is wanted.
//!
//! Connectors (`slack`, `local`; see [`connector`]) verify and translate platform payloads into
//! [`event::Event`]s and store them in the inbox ([`queue`]); the [`router`] hands each to a
//! handler in [`handlers`], which starts and stops turns of a [`session`]; tasks run on a
//! [`backend`] under leases ([`worker`]); every reply is an outbox row, delivered by its
//! connector's sender. See ARCHITECTURE.md.

pub mod app;
pub mod backend;
pub mod binding;
pub mod cli;
pub mod config;
pub mod connector;
pub mod context;
pub mod db;
pub mod digest;
pub mod egress;
pub mod event;
pub mod failure;
pub mod github;
pub mod guard;
pub mod handlers;
pub mod home;
pub mod ide;
pub mod ide_tokens;
pub mod identity;
pub mod ids;
pub mod janitor;
pub mod jobs;
pub mod lease;
pub mod limits;
pub mod linear;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod router;
pub mod server;
pub mod session;
pub mod settings;
pub mod signing;
pub mod slack;
pub mod spend;
pub mod templates;
pub mod worker;
