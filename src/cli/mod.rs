//! What the `chime` binary's operator commands read and print (`main.rs` parses the command line).

pub mod inspect;
