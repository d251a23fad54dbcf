//! The `opptak` binary's library: configuration, wiring of the roles, the
//! telephony simulator, and the commands (`demo`, `run`, `recordings`,
//! `loadgen`). The pipeline itself lives in `crates/`.

pub mod app;
pub mod audit;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod disclose;
pub mod identity;
pub mod loadgen;
pub mod oidc;

pub mod qa;
pub mod review;
pub mod sim;
pub mod subject;
pub mod telemetry;
pub mod web;
