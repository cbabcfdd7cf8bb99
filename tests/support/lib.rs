//! Test support shared by the end-to-end suite and crate tests: real git
//! repositories, a real HTTP git server on 127.0.0.1, and helpers that start
//! the real binaries and always stop them.

pub mod git;
pub mod plugins;
pub mod process;
pub mod sshd;
