//! TLS on both sides: the listener's certificate (with hot reload and optional client
//! certificates) and the client configuration used towards an `https://` upstream.
//!
//! rustls with the `ring` provider; TLS 1.2 and 1.3 only, rustls' safe defaults.

pub mod server;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setting that cannot be used; always names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Setup(String),
}

impl TlsError {
    fn file(path: &Path, reason: impl std::fmt::Display) -> Self {
        TlsError::File {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The crypto provider every TLS config here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file, in order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|e| TlsError::file(path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|e| TlsError::file(path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| TlsError::file(path, format!("holds no usable PEM private key: {e}")))
}

/// A certificate chain and its key, checked to belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        TlsError::file(
            key,
            format!("does not match certificate {}: {e}", cert.display()),
        )
    })
}
