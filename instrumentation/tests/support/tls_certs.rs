//! Certificates for the TLS tests (feature `otlp-tls`), made per test with
//! rcgen: a CA, a server certificate it signs for `127.0.0.1`, `::1` and
//! `localhost`, and a client certificate it signs, written as PEM files
//! into a directory of the test's own.
//!
//! Include it with `#[path = "support/tls_certs.rs"] mod tls_certs;`; the
//! including crate needs the dev-dependency `rcgen` (`pem`, a provider).

// Each including test crate uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM text of a certificate and of its private key.
pub struct Pem {
    pub certificate: String,
    pub key: String,
}

/// A CA, and a server and a client certificate it signed.
pub struct Certificates {
    pub ca: Pem,
    pub server: Pem,
    pub client: Pem,
    dir: PathBuf,
}

impl Certificates {
    /// New certificates, their files under a directory named after `test`.
    pub fn new(test: &str) -> Certificates {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf = |names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
            let certificate = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
            Pem { certificate: certificate.pem(), key: key.serialize_pem() }
        };
        let server = leaf(&["127.0.0.1", "::1", "localhost"]);
        let client = leaf(&["snapview-test-client"]);
        let dir = std::env::temp_dir().join(format!("snapview-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certificates = Certificates { ca: Pem { certificate: ca.pem(), key: ca_key_pem }, server, client, dir };
        for (name, text) in [
            ("ca.pem", &certificates.ca.certificate),
            ("client.pem", &certificates.client.certificate),
            ("client.key", &certificates.client.key),
        ] {
            std::fs::write(certificates.dir.join(name), text).unwrap();
        }
        certificates
    }

    /// The CA's certificate file, for the exporter to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The client's certificate and key files.
    pub fn client_files(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.pem"), self.dir.join("client.key"))
    }

    /// A file of the test's directory holding `text`.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
