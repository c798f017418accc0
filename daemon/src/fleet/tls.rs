//! TLS for the broker connection: a rustls client configuration (ring
//! provider) that trusts only the given CA and presents a client
//! certificate, and the device id taken from that certificate's common name.
//!
//! Owns reading the PEM files; never consults the system trust store.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::FleetError;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, FleetError> {
    std::fs::read(path).map_err(|e| FleetError::Pem {
        what,
        path: path.into(),
        reason: e.to_string(),
    })
}

/// The certificates (DER) in the PEM file `path`; at least one.
///
/// Errors: [`FleetError::Pem`].
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, FleetError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FleetError::Pem {
            what,
            path: path.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(FleetError::Pem {
            what,
            path: path.into(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// A rustls client configuration trusting only the CA certificates in `ca`
/// and authenticating with `cert` (PEM chain, leaf first) and `key` (PEM,
/// PKCS#8, SEC1 or PKCS#1).
///
/// Errors: [`FleetError::Pem`] for unreadable files, [`FleetError::Tls`]
/// when rustls refuses them (e.g. key and certificate do not match).
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, FleetError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs("CA certificate", ca)? {
        roots.add(c).map_err(|e| FleetError::Pem {
            what: "CA certificate",
            path: ca.into(),
            reason: e.to_string(),
        })?;
    }
    let chain = load_certs("client certificate", cert)?;
    let key_pem = read("client key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| FleetError::Pem {
        what: "client key",
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| FleetError::Tls(format!("client certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// The subject common name of the first certificate in the PEM file `cert`
/// (X.509, RFC 5280), the device's identity on the broker.
///
/// Errors: [`FleetError::Pem`], [`FleetError::NoDeviceId`] when it has no
/// common name.
pub fn common_name(cert: &Path) -> Result<String, FleetError> {
    let der = load_certs("client certificate", cert)?.remove(0);
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| FleetError::Pem {
            what: "client certificate",
            path: cert.into(),
            reason: e.to_string(),
        })?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    cn.ok_or_else(|| FleetError::NoDeviceId(format!("{} has none", cert.display())))
}
