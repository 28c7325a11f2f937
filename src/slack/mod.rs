//! The Slack connector: verifies and translates inbound requests, and reports back in threads.

pub mod api;
pub mod assistant;
pub mod blocks;
pub mod cards;
pub mod connector;
pub mod events;
pub mod home;
pub mod http;
pub mod people;
pub mod reporter;
pub mod sender;
pub mod socket;
pub mod stream;
pub mod verify;

pub use connector::SlackConnector;
