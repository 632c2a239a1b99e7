//! `--secure` for the embedded local cluster: a password for the default user, and a CA with
//! server and client certificates for TLS, kept in a directory so clients can use them.
//!
//! Made once and reused: restarting the local cluster keeps the same password and
//! certificates. (scripts/cluster.sh makes the same set with openssl.)

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// What a secured local cluster's clients need.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    pub dir: PathBuf,
    pub password: String,
}

impl LocalSecrets {
    /// A file in the secrets directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The secrets in `dir`, made there first when missing.
pub fn ensure(dir: &Path) -> anyhow::Result<LocalSecrets> {
    let secrets = LocalSecrets {
        dir: dir.to_path_buf(),
        password: String::new(),
    };
    if !secrets.file("client.crt").exists() || !secrets.file("password").exists() {
        make(dir).with_context(|| format!("cannot make the secured cluster's secrets in {}", dir.display()))?;
    }
    let password = std::fs::read_to_string(secrets.file("password"))?.trim().to_string();
    Ok(LocalSecrets { password, ..secrets })
}

fn make(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kvstore local CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usages: &[ExtendedKeyUsagePurpose]| -> anyhow::Result<(String, String)> {
        let mut p = CertificateParams::new(names)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages.extend_from_slice(usages);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        Ok((p.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    };
    let (server_crt, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "kvstore server",
        // The servers and the gate present it to each other's cluster ports too.
        &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    let (client_crt, client_key) = leaf(Vec::new(), "kvstore client", &[ExtendedKeyUsagePurpose::ClientAuth])?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(dir.join("server.crt"), server_crt)?;
    write_private(&dir.join("server.key"), &server_key)?;
    std::fs::write(dir.join("client.crt"), client_crt)?;
    write_private(&dir.join("client.key"), &client_key)?;
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).context("the operating system's random source")?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&dir.join("password"), &format!("{password}\n"))?;
    Ok(())
}
