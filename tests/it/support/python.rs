//! A Python virtualenv with the official Alibaba Cloud SDKs, made on first use.
//!
//! Tests that drive the simulator or our client with the official SDKs call [`sdk_python`];
//! the venv lives under the target directory and is built once (under a file lock, since test
//! binaries run in parallel) from `tests/it/ecs/sdk/requirements.txt`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Path to the venv's `python`, with the pinned SDKs installed.
pub fn sdk_python() -> PathBuf {
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ecs/sdk/requirements.txt");
    let wanted =
        fs::read_to_string(&requirements).expect("tests/it/ecs/sdk/requirements.txt is readable");
    let venv = target_dir().join("sdk-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-requirements.txt");

    fs::create_dir_all(target_dir()).expect("target dir can be created");
    let lock = File::create(target_dir().join("sdk-venv.lock")).expect("lock file can be created");
    lock.lock().expect("lock the venv");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = fs::remove_dir_all(&venv);
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements));
        fs::write(&stamp, &wanted).expect("stamp written");
    }
    lock.unlock().expect("unlock the venv");
    python
}

fn run(command: &mut Command) {
    let status = command.status().expect("command starts");
    assert!(status.success(), "{command:?} failed: {status}");
}
