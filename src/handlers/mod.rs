//! One module per kind of event Chime reacts to.

pub mod approval;
pub mod backend_update;
pub mod buttons;
pub mod choose;
pub mod digest;
pub mod feedback;
pub mod home;
pub mod ide;
pub mod link;
pub mod mention;
pub mod message;
pub mod mute;
pub mod pull_request;
pub mod request;
pub mod starters;
pub mod stop;
pub mod suggestions;
