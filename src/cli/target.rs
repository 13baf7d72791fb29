//! The one EcsInstance a command acts on (`NAME [-n NAMESPACE]`), shared by `reboot`,
//! `override` and the `kubectl ecsi` verbs so that they resolve it the same way.

use kube::Client;

/// One EcsInstance.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The EcsInstance's name.
    pub name: String,

    /// Its namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

impl Target {
    /// A client from the kubeconfig (or in-cluster config), and the target's namespace: the one
    /// given, else the kubeconfig context's, as kubectl does.
    pub(crate) async fn connect(&self) -> Result<(Client, String), kube::Error> {
        let client = crate::controller::k8s::client::infer().await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok((client, namespace))
    }
}
