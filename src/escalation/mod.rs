//! Escalation: policies (steps at offsets from the trigger), on-call schedules, and the durable
//! timer engine that fires due steps exactly once.

mod engine;
mod policy;
pub mod schedule;

pub use engine::{DeclareError, Escalator};
pub use policy::{Directory, Policy, PolicyStep};
