//! What the `chime` binary's operator commands do (`main.rs` parses the command line).

pub mod digest;
pub mod inspect;
pub mod policy;
