//! The simulator from outside, one test binary: its admin API (`admin`), the ECS errors it
//! answers (`errors`), the signatures it checks (`signatures`) and the instance state machine
//! (`state_machine`). `support` is the signed client they share.

mod support;

mod admin;
mod errors;
mod signatures;
mod state_machine;
