//! Test support shared by the end-to-end suite and crate tests: real git
//! repositories, a real HTTP git server on 127.0.0.1, and process helpers.

pub mod git;
