//! What `deploy/` installs: every manifest parses and means what the README says
//! (`manifests`), and its RBAC grants exactly what the controller calls (`rbac`).

mod manifests;
mod rbac;
