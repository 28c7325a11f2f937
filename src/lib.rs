//! Chime: a self-hosted team agent that chimes in only when it is wanted.

pub mod backend;
pub mod config;
pub mod db;
pub mod event;
pub mod ids;
pub mod inbox;
