//! [`TlsSettings`]: the TLS flags, named as in Redis's configuration.

use std::path::PathBuf;

/// Whether clients of a TLS port must present a certificate signed by the CA
/// (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthClients {
    /// A client certificate is required (Redis's default).
    #[default]
    Yes,
    /// No client certificate is asked for.
    No,
    /// A client certificate is verified when presented, not required.
    Optional,
}

/// A Redis-style `yes`/`no` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum YesNo {
    Yes,
    #[default]
    No,
}

/// The TLS flags shared by kvserver and kvgate.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsSettings {
    /// Port for TLS clients (RESP), beside the plain port. 0 picks a free one.
    #[arg(long, env = "KVSTORE_TLS_PORT")]
    pub tls_port: Option<u16>,
    /// The server's certificate chain (PEM).
    #[arg(long, env = "KVSTORE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "KVSTORE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "KVSTORE_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate signed by --tls-ca-cert-file.
    #[arg(long, env = "KVSTORE_TLS_AUTH_CLIENTS", value_enum, default_value_t = AuthClients::Yes)]
    pub tls_auth_clients: AuthClients,
    /// How often the certificate, key and CA files are checked for changes; a change is
    /// loaded for new connections without a restart.
    #[arg(long, env = "KVSTORE_TLS_RELOAD_INTERVAL_MS", default_value_t = 5000)]
    pub tls_reload_interval_ms: u64,
    /// TLS on the cluster port: servers serve it with TLS, and servers and gates reach
    /// cluster ports over TLS, verifying the server against --tls-ca-cert-file and
    /// presenting --tls-cert-file. Every server and gate of a cluster must agree.
    #[arg(long, env = "KVSTORE_TLS_CLUSTER", value_enum, default_value_t = YesNo::No)]
    pub tls_cluster: YesNo,
    /// TLS for replication. Followers replicate over the cluster port, so this is the same
    /// switch as --tls-cluster (either turns TLS on there), kept under Redis's name.
    #[arg(long, env = "KVSTORE_TLS_REPLICATION", value_enum, default_value_t = YesNo::No)]
    pub tls_replication: YesNo,
    /// How long a client may take to complete the TLS handshake.
    #[arg(long, env = "KVSTORE_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10000)]
    pub tls_handshake_timeout_ms: u64,
}

impl TlsSettings {
    /// True when a certificate is configured (TLS ports can be served).
    pub fn enabled(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// True when the cluster port (and every connection to one) uses TLS.
    pub fn cluster(&self) -> bool {
        self.tls_cluster == YesNo::Yes || self.tls_replication == YesNo::Yes
    }

    /// Checks that the settings hang together: a TLS port needs a certificate and key, and
    /// requiring client certificates needs a CA.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("--tls-cert-file and --tls-key-file go together".into());
        }
        if self.tls_port.is_some() && !self.enabled() {
            return Err("--tls-port needs --tls-cert-file and --tls-key-file".into());
        }
        if self.cluster() && (!self.enabled() || self.tls_ca_cert_file.is_none()) {
            return Err(
                "--tls-cluster and --tls-replication need --tls-cert-file, --tls-key-file and --tls-ca-cert-file (to verify peers)"
                    .into(),
            );
        }
        if self.enabled() && self.tls_auth_clients != AuthClients::No && self.tls_ca_cert_file.is_none() {
            return Err(
                "--tls-auth-clients yes (the default) and optional need --tls-ca-cert-file; or set --tls-auth-clients no"
                    .into(),
            );
        }
        if self.tls_reload_interval_ms == 0 {
            return Err("--tls-reload-interval-ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let with = |f: fn(&mut TlsSettings)| {
            let mut s = TlsSettings {
                tls_reload_interval_ms: 5000,
                ..TlsSettings::default()
            };
            f(&mut s);
            s.validate()
        };
        assert!(with(|_| {}).is_ok(), "no TLS at all is fine");
        assert!(with(|s| s.tls_port = Some(0)).unwrap_err().contains("--tls-cert-file"));
        assert!(
            with(|s| s.tls_cert_file = Some("c".into()))
                .unwrap_err()
                .contains("go together")
        );
        let cert = |s: &mut TlsSettings| {
            s.tls_cert_file = Some("c".into());
            s.tls_key_file = Some("k".into());
        };
        assert!(
            with(cert).unwrap_err().contains("--tls-ca-cert-file"),
            "client certificates need a CA"
        );
        assert!(
            with(|s| {
                s.tls_cert_file = Some("c".into());
                s.tls_key_file = Some("k".into());
                s.tls_auth_clients = AuthClients::No;
            })
            .is_ok()
        );
    }
}
