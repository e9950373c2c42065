//! TLS material for tests: a CA and a server certificate for 127.0.0.1 and localhost, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// PEM files for a TLS registry.
pub struct TlsFiles {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// A directory holding `ca.crt`, as skopeo's `--cert-dir` wants.
    pub cert_dir: PathBuf,
}

/// Generates a CA and a server certificate into `dir`.
pub fn generate(dir: &Path) -> TlsFiles {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();

    let cert_dir = dir.join("certs.d");
    std::fs::create_dir_all(&cert_dir).unwrap();
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        cert_dir: cert_dir.clone(),
    };
    std::fs::write(&files.ca_cert, ca_cert.pem()).unwrap();
    std::fs::write(cert_dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
