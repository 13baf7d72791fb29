//! `ecs-power-controller crd [NAME]`: the CustomResourceDefinitions as YAML, generated from the
//! Rust types. Without a name every CRD is printed, as one multi-document stream that
//! `kubectl apply -f -` takes; with one, exactly what `crds/NAME.yaml` holds.

use std::process::ExitCode;

use crate::api::{CRDS, crd_yaml};

/// Print the CustomResourceDefinitions as YAML.
#[derive(clap::Args, Debug)]
pub(crate) struct CrdArgs {
    /// Only this CRD: its file stem under `crds/` (`ecsinstance`, `ecspowerschedule`).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(CRDS.iter().map(|(name, _)| *name)))]
    pub name: Option<String>,
}

pub(crate) fn run(args: CrdArgs) -> ExitCode {
    let mut documents = Vec::new();
    for (name, crd) in CRDS {
        if args.name.as_deref().is_some_and(|wanted| wanted != *name) {
            continue;
        }
        match crd_yaml(&crd()) {
            Ok(yaml) => documents.push(yaml),
            Err(err) => {
                eprintln!("could not render the {name} CRD: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", documents.join("---\n"));
    ExitCode::SUCCESS
}
