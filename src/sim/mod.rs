//! A local simulator of the ECS OpenAPI subset this project uses.

pub mod cli;
