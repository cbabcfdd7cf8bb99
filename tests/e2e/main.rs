//! End-to-end tests: the real `aigis` and `aigis-agent` binaries, real git
//! repositories served over file:// and http://127.0.0.1, real processes.

mod external;
mod hardening;
mod operate;
mod proxy;
mod python;
mod remote;
