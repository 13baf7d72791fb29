//! Manifests on disk, for the commands that work without a cluster (`schedule preview
//! --file`, `plan --file`, `demo`): multi-document YAML files, or a directory of them, read the
//! same way everywhere.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not YAML: {message}")]
    Yaml { path: PathBuf, message: String },
}

/// Every YAML document of the file `path` (empty documents skipped).
pub(crate) fn documents(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A fleet's manifests rendered into one file (`kustomize build > fleet.yaml`) hold far more
    // than the parser's default 1,024 documents; the other limits grow with them.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 100_000,
            max_nodes: 10_000_000,
            max_events: 40_000_000,
        },
    };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(&text, options).map_err(|e| {
            ManifestError::Yaml {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// The `*.yaml` and `*.yml` files of the directory `dir` in name order, its kustomization
/// excluded (it is no object).
pub(crate) fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| p.file_stem().is_none_or(|s| s != "kustomization"))
        .collect();
    files.sort();
    Ok(files)
}
