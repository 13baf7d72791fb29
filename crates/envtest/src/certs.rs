//! The certificates and keys, made with the `openssl` command (on every machine that has curl
//! and git; no Rust crypto dependency to compile): one CA signs the API server's serving
//! certificate and the admin's client certificate (`O=system:masters`), plus the key pair that
//! signs ServiceAccount tokens. EC P-256 throughout: fast to generate.

use crate::{Error, io};
use std::path::Path;
use std::process::Command;

fn openssl(step: &'static str, dir: &Path, args: &[&str]) -> Result<(), Error> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(io("run openssl (is it installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Openssl {
            step,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// Writes `ca.crt`, `apiserver.{crt,key}`, `admin.{crt,key}`, `sa.key`, `sa.pub` into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<(), Error> {
    let req = |step, subj: &str, name: &str| -> Result<(), Error> {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let mut args = vec!["req"];
        args.extend(EC);
        args.extend(["-nodes", "-subj", subj, "-keyout", &key, "-out", &csr]);
        openssl(step, dir, &args)
    };
    let sign = |step, name: &str, ext: &str| -> Result<(), Error> {
        let ext_file = format!("{name}.ext");
        std::fs::write(dir.join(&ext_file), ext).map_err(io("write an openssl extension file"))?;
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(
            step,
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "365",
                "-extfile",
                &ext_file,
                "-out",
                &crt,
            ],
        )
    };
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
    ca.extend([
        "-nodes",
        "-days",
        "365",
        "-subj",
        "/CN=envtest-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    openssl("CA", dir, &ca)?;
    req("serving key", "/CN=kube-apiserver", "apiserver")?;
    sign(
        "serving certificate",
        "apiserver",
        "subjectAltName=IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n\
         extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )?;
    req("admin key", "/O=system:masters/CN=envtest-admin", "admin")?;
    sign(
        "admin certificate",
        "admin",
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )?;
    openssl(
        "ServiceAccount key",
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "sa.key",
        ],
    )?;
    openssl(
        "ServiceAccount public key",
        dir,
        &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
    )?;
    Ok(())
}
