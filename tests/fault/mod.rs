//! Parts of the fault-tolerance suite (`tests/fault.rs`).
#![allow(unreachable_pub)]

pub mod broker;
pub mod check;
pub mod procs;
pub mod workload;
