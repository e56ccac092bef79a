//! The TLS harness: a PKI made with rcgen at test time (no key is ever committed), rustls test
//! clients ([`client`]). HTTPS gateways are the common [`TestGateway`] with a `[tls]` section
//! ([`TestGateway::https`]); a TLS fake cluster is the common
//! [`FakeUpstream`](super::FakeUpstream) built with `tls`.
#![allow(dead_code)]

pub mod client;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::common::{basic_elastic, TestGateway};
use client::TlsClient;

/// The crypto provider every test client and server is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server key algorithms the listener must serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// A fresh key; `None` for RSA when `openssl` is missing (ring cannot generate RSA keys).
    pub fn generate(self) -> Option<KeyPair> {
        let alg = match self {
            KeyKind::Rsa => return rsa_key(),
            KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        };
        Some(KeyPair::generate_for(alg).unwrap())
    }
}

fn rsa_key() -> Option<KeyPair> {
    let output = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let pem = String::from_utf8(output.stdout).unwrap();
    Some(KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap())
}

/// A certificate authority (root or intermediate) that issues leaves.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert: CertificateDer<'static>,
    pub pem: String,
    /// This CA's PEM and those of the intermediates above it: what a leaf's chain file appends.
    /// Empty for a root, which clients hold themselves.
    chain_tail: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Leaf parameters: `names` as SANs (IPs become IP SANs), valid from yesterday for 90 days.
pub fn leaf_params(names: &[&str], client: bool) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        if client {
            "tokengate-test-client"
        } else {
            "localhost"
        },
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let now = UNIX_EPOCH.elapsed().unwrap();
    let day = Duration::from_secs(86_400);
    params.not_before = date_time_ymd(1970, 1, 1) + (now - day);
    params.not_after = date_time_ymd(1970, 1, 1) + (now + 90 * day);
    params
}

/// The names a test server certificate is good for.
pub const LOCAL_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

impl Ca {
    pub fn root(name: &str) -> Ca {
        let key = KeyKind::P256.generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            cert: cert.der().clone(),
            params,
            key,
            chain_tail: String::new(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyKind::P256.generate().unwrap();
        let params = ca_params(name);
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Ca {
            chain_tail: format!("{}{}", cert.pem(), self.chain_tail),
            pem: cert.pem(),
            cert: cert.der().clone(),
            params,
            key,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A server certificate for [`LOCAL_NAMES`] with a `kind` key, or `None` (see [`KeyKind`]).
    pub fn try_server(&self, kind: KeyKind) -> Option<Issued> {
        Some(self.issue(&leaf_params(&LOCAL_NAMES, false), &kind.generate()?))
    }

    /// A P-256 server certificate for [`LOCAL_NAMES`].
    pub fn server(&self) -> Issued {
        self.try_server(KeyKind::P256).unwrap()
    }

    /// A P-256 client certificate.
    pub fn client(&self) -> Issued {
        self.issue(&leaf_params(&[], true), &KeyKind::P256.generate().unwrap())
    }

    pub fn issue(&self, params: &CertificateParams, key: &KeyPair) -> Issued {
        let cert = params.signed_by(key, &self.issuer()).unwrap();
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.chain_tail),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate as `<name>.pem` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// SHA-256 of the certificate as `AB:CD:…`, the way Elasticsearch prints it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.cert.as_ref());
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }
}

/// A leaf certificate, its chain (leaf first, intermediates after) and its key.
#[derive(Clone)]
pub struct Issued {
    pub cert: CertificateDer<'static>,
    pub chain_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// A self-signed P-256 server certificate for [`LOCAL_NAMES`].
    pub fn self_signed() -> Issued {
        let key = KeyKind::P256.generate().unwrap();
        let cert = leaf_params(&LOCAL_NAMES, false).self_signed(&key).unwrap();
        Issued {
            chain_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `<name>.pem` (the chain) and `<name>.key` into `dir`; returns (cert, key) paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// The `[tls]` section for `cert`/`key`, plus `extra` lines (e.g. `client_ca = "…"`).
pub fn tls_section(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\n{extra}\n",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// Creates an `elastic/fleet-server` token over HTTPS as `elastic` at `gw`'s HTTPS listener;
/// returns its bearer value.
pub async fn create_token_over_tls(gw: &TestGateway, client: &TlsClient, name: &str) -> String {
    let addr = gw.https_addr.expect("the gateway has no HTTPS listener");
    let mut conn = client.connect(addr).await.unwrap();
    let path = format!("/_security/service/elastic/fleet-server/credential/token/{name}");
    let (status, body) = conn.send("POST", &path, &basic_elastic()).await.unwrap();
    assert_eq!(status, 200, "creating token {name}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["token"]["value"].as_str().unwrap().to_owned()
}

/// Whether `program` can be run from `PATH`.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
