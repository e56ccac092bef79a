//! The client side towards an `https://` upstream: system roots or a CA file (Elasticsearch's
//! `http_ca.crt`), optional CA pinning by fingerprint, optional client certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{load_certs, load_key, provider, TlsError};
use crate::config::UpstreamTls;

/// The rustls client configuration for the upstream (ALPN is set by the connector). For a
/// plain-HTTP upstream (`used` false) it trusts nothing and reads no files: it is never used, and
/// reading the system roots would only slow the start.
pub fn client_config(config: &UpstreamTls, used: bool) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    if !used {
        return Ok(builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    let builder = if !config.verify {
        tracing::warn!("upstream.verify = false: the upstream's certificate is NOT checked; anyone on the path can read and change traffic");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Trust::Anything))
    } else if let Some(pin) = config.ca_fingerprint {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Trust::Pinned(pin)))
    } else {
        builder.with_root_certificates(roots(config)?)
    };
    match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::File {
                path: key.clone(),
                reason: format!("does not match {}: {e}", cert.display()),
            }),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The configured CA file, or the operating system's roots.
fn roots(config: &UpstreamTls) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match &config.ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "skipping an unreadable system root certificate");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Setup(
                    "no system root certificates found; set upstream.ca".to_owned(),
                ));
            }
        }
    }
    Ok(roots)
}

/// Certificate checks other than "chains to a root store".
#[derive(Debug)]
enum Trust {
    /// Trusts the chain only through the CA whose SHA-256 fingerprint was configured, as
    /// Elasticsearch's enrolment pins `http_ca.crt`. Name and validity are still checked.
    Pinned([u8; 32]),
    /// `verify = false`: any certificate. Handshake signatures are still checked, so the
    /// session is at least bound to the presented key.
    Anything,
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Trust::Pinned(pin) = self else {
            return Ok(ServerCertVerified::assertion());
        };
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|cert| Sha256::digest(cert.as_ref()).as_slice() == pin)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
