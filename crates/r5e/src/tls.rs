//! TLS for `r5e serve`: a certificate authority and a server certificate of its own, made on first
//! start in `DIR/tls/` (keys mode 0600) and named in the kubeconfig, so that kubectl (which sends
//! tokens only over TLS) trusts the server without anything installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::commands::token::write_private;

/// Where the certificates live.
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn files(dir: &Path) -> Files {
    let tls = dir.join("tls");
    Files { ca: tls.join("ca.crt"), cert: tls.join("server.crt"), key: tls.join("server.key") }
}

/// Make the CA and the server certificate if they are not there yet. The server certificate
/// names `localhost`, `127.0.0.1`, `::1` and every extra name given.
pub fn ensure(dir: &Path, extra_names: &[String]) -> Result<Files> {
    let f = files(dir);
    if f.ca.exists() && f.cert.exists() && f.key.exists() {
        return Ok(f);
    }
    std::fs::create_dir_all(dir.join("tls"))?;
    let ca_key = KeyPair::generate().context("cannot make the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "r5e local CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra_names.iter().cloned());
    let server_key = KeyPair::generate().context("cannot make the server key")?;
    let mut server = CertificateParams::new(names)?;
    server.distinguished_name.push(DnType::CommonName, "r5e");
    let server_cert = server.signed_by(&server_key, &issuer)?;

    std::fs::write(&f.ca, ca_cert.pem())?;
    std::fs::write(&f.cert, server_cert.pem())?;
    write_private(&f.key, server_key.serialize_pem().as_bytes())?;
    Ok(f)
}

/// A TLS acceptor for the server certificate.
pub fn acceptor(f: &Files) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
        .with_context(|| format!("cannot read {}", f.cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&f.key).with_context(|| format!("cannot read {}", f.key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
