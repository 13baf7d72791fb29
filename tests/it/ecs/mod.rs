//! The ECS side from outside: the official Alibaba Cloud SDKs against the simulator
//! (`official_sdks`, `sdk_environment`), the `ecs` command's signatures verified by the SDK's
//! server-side check (`cli_signatures`), and endpoints that answer badly (`hostile_endpoints`).
//! The SDKs' Python scripts are in `sdk/`.

mod cli_signatures;
mod hostile_endpoints;
mod official_sdks;
mod sdk_environment;
