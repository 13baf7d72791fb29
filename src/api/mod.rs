//! The `EcsInstance` custom resource.
