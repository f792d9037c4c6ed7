//! HTTPS for `weft serve --tls-cert FILE --tls-key FILE` (rustls): the certificate chain and key
//! are read from PEM files at start. Every connection's handshake runs in the connection's own task
//! with a time limit ([`crate::http`]), so a slow or silent client never holds up the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate chain and its private key are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads the files into a server configuration; the error names the file and what is wrong.
pub fn config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read_err(&files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate (a PEM `CERTIFICATE` block) in the file",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        read_err(
            &files.key,
            &format!("no usable private key in the file ({e})"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a certificate and key: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    Ok(Arc::new(config))
}
