//! `deploy/krew/ecsi.yaml`, the krew manifest of the `kubectl ecsi` plugin, is a release
//! template as krew-release-bot renders it upstream (`{{ .TagName }}`, and `{{addURIAndSha
//! "URL" .TagName }}` for each platform's archive, which the bot downloads and hashes). Here it
//! is rendered for a version with archives the test builds from the binary (a tar.gz holding
//! `kubectl-ecsi`, as a release would), and the result is checked against krew's schema: the
//! fields krew requires, `os`/`arch` selectors, the bin name, https URIs, SHA-256s; then the
//! host's archive is unpacked as krew would and the plugin answers.
//!
//! The host's binary stands in for the other platforms' builds (no cross-compilation here): the
//! test checks the manifest and its rendering, not the release pipeline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const TEMPLATE: &str = "deploy/krew/ecsi.yaml";
const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
const TAG: &str = "v0.1.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// krew-release-bot's rendering: `{{addURIAndSha "URL" .TagName }}` becomes `uri: URL` and
/// `sha256: <sha256 of what URL serves>` (indented for a platform entry, as the bot does), and
/// `{{ .TagName }}` the tag.
fn render(template: &str, tag: &str, mut sha256_of: impl FnMut(&str) -> String) -> String {
    const OPEN: &str = "{{addURIAndSha \"";
    const CLOSE: &str = "\" .TagName }}";
    let with_tag = |text: &str| text.replace("{{ .TagName }}", tag);
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&with_tag(&rest[..start]));
        let after = &rest[start + OPEN.len()..];
        let end = after.find(CLOSE).expect("addURIAndSha is closed");
        let uri = with_tag(&after[..end]);
        out.push_str(&format!("uri: {uri}\n    sha256: {}", sha256_of(&uri)));
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(&with_tag(rest));
    assert!(!out.contains("{{"), "a template action is left:\n{out}");
    out
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The keys `value` may hold (krew decodes manifests strictly: any other key is an error).
fn only_keys(value: &Value, allowed: &[&str], at: &str) {
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not a mapping"))
        .keys()
        .map(String::as_str)
        .collect();
    let unknown: Vec<_> = keys.iter().filter(|k| !allowed.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "{at}: fields krew does not know: {unknown:?}"
    );
}

fn text<'a>(value: &'a Value, at: &str) -> &'a str {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{at} is required (a string)"));
    assert!(!text.trim().is_empty(), "{at} is empty");
    text
}

/// krew's validation (pkg/index/validation) of a plugin manifest.
fn validate(manifest: &Value, file_name: &str) {
    only_keys(
        manifest,
        &["apiVersion", "kind", "metadata", "spec"],
        "manifest",
    );
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    let name = text(&manifest["metadata"]["name"], "metadata.name");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{name}"
    );
    assert_eq!(
        format!("{name}.yaml"),
        file_name,
        "the file is named after the plugin"
    );

    let spec = &manifest["spec"];
    only_keys(
        spec,
        &[
            "version",
            "homepage",
            "shortDescription",
            "description",
            "caveats",
            "platforms",
        ],
        "spec",
    );
    let version = text(&spec["version"], "spec.version");
    let semver = version
        .strip_prefix('v')
        .expect("spec.version starts with v");
    let core = semver.split(['-', '+']).next().unwrap();
    assert!(
        core.split('.').count() == 3
            && core
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        "spec.version {version} is not vMAJOR.MINOR.PATCH"
    );
    let short = text(&spec["shortDescription"], "spec.shortDescription");
    assert!(
        short.len() <= 50,
        "spec.shortDescription: {} characters",
        short.len()
    );
    assert!(text(&spec["homepage"], "spec.homepage").starts_with("https://"));
    text(&spec["description"], "spec.description");
    text(&spec["caveats"], "spec.caveats");

    let platforms = spec["platforms"].as_array().expect("spec.platforms");
    assert!(!platforms.is_empty(), "spec.platforms is empty");
    let mut selectors = BTreeSet::new();
    for (i, platform) in platforms.iter().enumerate() {
        let at = format!("spec.platforms[{i}]");
        only_keys(
            platform,
            &["selector", "uri", "sha256", "bin", "files"],
            &at,
        );
        let labels = &platform["selector"]["matchLabels"];
        only_keys(
            labels,
            &["os", "arch"],
            &format!("{at}.selector.matchLabels"),
        );
        let os = text(&labels["os"], &format!("{at}.selector.matchLabels.os"));
        let arch = text(&labels["arch"], &format!("{at}.selector.matchLabels.arch"));
        assert!(
            ["linux", "darwin", "windows"].contains(&os),
            "{at}: os {os}"
        );
        assert!(
            ["amd64", "arm64", "arm", "386"].contains(&arch),
            "{at}: arch {arch}"
        );
        assert!(
            selectors.insert((os, arch)),
            "{at}: {os}/{arch} listed twice"
        );
        let uri = text(&platform["uri"], &format!("{at}.uri"));
        assert!(uri.starts_with("https://"), "{at}.uri: {uri}");
        assert!(
            uri.ends_with(".tar.gz") || uri.ends_with(".zip"),
            "{at}.uri: {uri}"
        );
        assert!(uri.contains(version), "{at}.uri names the version: {uri}");
        let sha = text(&platform["sha256"], &format!("{at}.sha256"));
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{at}.sha256: {sha}"
        );
        let bin = text(&platform["bin"], &format!("{at}.bin"));
        assert_eq!(bin, format!("kubectl-{name}"), "{at}.bin");
        assert!(!bin.contains(['/', '\\']), "{at}.bin is a file name");
    }
}

#[test]
fn the_krew_manifest_renders_into_one_krew_accepts_and_its_archive_installs() {
    let dir = std::env::temp_dir().join(format!("krew-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    // The release archive: the binary under its plugin name, at the archive's top.
    std::fs::copy(BIN, staging.join("kubectl-ecsi")).unwrap();
    let archive = dir.join("archive.tar.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg(r#"tar -cf - -C "$1" kubectl-ecsi | gzip -1 > "$2""#)
        .args(["pack", staging.to_str().unwrap(), archive.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(packed.success());
    let sha = sha256sum(&archive);

    let template = std::fs::read_to_string(repo().join(TEMPLATE)).unwrap();
    let mut uris = Vec::new();
    let rendered = render(&template, TAG, |uri| {
        uris.push(uri.to_string());
        sha.clone()
    });
    let manifest: Value = serde_saphyr::from_str(&rendered)
        .unwrap_or_else(|e| panic!("the rendered manifest is not YAML: {e}\n{rendered}"));
    validate(&manifest, "ecsi.yaml");
    assert_eq!(manifest["spec"]["version"], TAG);

    // The host's entry: krew downloads the archive, checks its SHA-256, unpacks it and links
    // `bin` as kubectl-ecsi.
    let (os, arch) = (
        std::env::consts::OS,
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        },
    );
    let host = manifest["spec"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["selector"]["matchLabels"]["os"] == os && p["selector"]["matchLabels"]["arch"] == arch
        })
        .unwrap_or_else(|| panic!("no platform for {os}/{arch}"));
    assert!(
        host["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/kubectl-ecsi_{TAG}_{os}_{arch}.tar.gz")),
        "{}",
        host["uri"]
    );
    assert_eq!(host["sha256"], sha.as_str());
    let installed = dir.join("store");
    std::fs::create_dir_all(&installed).unwrap();
    let unpacked = Command::new("tar")
        .args([
            "-xzf",
            archive.to_str().unwrap(),
            "-C",
            installed.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(unpacked.success());
    let bin = installed.join(host["bin"].as_str().unwrap());
    let out = Command::new(&bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(help.contains("reboot") && help.contains("status"), "{help}");
    assert_eq!(
        uris.len(),
        manifest["spec"]["platforms"].as_array().unwrap().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checks refuse what krew refuses: they are worth something.
#[test]
fn the_krew_checks_refuse_a_broken_manifest() {
    let template = std::fs::read_to_string(repo().join(TEMPLATE)).unwrap();
    let good = render(&template, TAG, |_| "a".repeat(64));
    validate(&serde_saphyr::from_str(&good).unwrap(), "ecsi.yaml");
    for (from, to) in [
        ("bin: kubectl-ecsi", "bin: ecs-power-controller"),
        ("uri: https://", "uri: http://"),
        (&format!("sha256: {}", "a".repeat(64)), "sha256: abc"),
        ("os: linux", "os: plan9"),
        ("  homepage:", "  home:"),
        (
            "shortDescription: ",
            "shortDescription: Much more than fifty characters of description here ",
        ),
    ] {
        let broken = good.replacen(from, to, 1);
        assert_ne!(broken, good, "{from}");
        let manifest: Value = serde_saphyr::from_str(&broken).unwrap();
        let refused = std::panic::catch_unwind(|| validate(&manifest, "ecsi.yaml"));
        assert!(refused.is_err(), "{from} -> {to} was accepted");
    }
}
