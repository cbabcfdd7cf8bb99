//! End-to-end tests: the real `aigis` and `aigis-agent` binaries, real git
//! repositories served over file:// and http://127.0.0.1, real processes.

mod console;
mod dialect;
mod external;
mod fairness;
mod hardening;
mod hostile;
mod isolation;
mod lifecycle;
mod operate;
mod proxy;
mod python;
mod remote;
mod reread;
mod service;
mod tell;
mod verbs;
