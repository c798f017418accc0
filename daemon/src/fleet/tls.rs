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
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    use x509_cert::der::{Decode, Tag, Tagged};
    let der = load_certs("client certificate", cert)?.remove(0);
    let parsed = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| FleetError::Pem {
        what: "client certificate",
        path: cert.into(),
        reason: e.to_string(),
    })?;
    // The first commonName (2.5.4.3) of the subject, as a UTF8String or
    // PrintableString (the two encodings RFC 5280 section 4.1.2.6 expects).
    let cn = parsed
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
        .find_map(|atv| match atv.value.tag() {
            Tag::Utf8String => atv
                .value
                .decode_as::<Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_string()),
            Tag::PrintableString => atv
                .value
                .decode_as::<PrintableStringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_string()),
            _ => None,
        });
    cn.ok_or_else(|| FleetError::NoDeviceId(format!("{} has none", cert.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: rcgen::DistinguishedName) -> (tempfile::TempDir, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        (dir, path)
    }

    #[test]
    fn the_common_name_is_read_in_both_string_types() {
        use rcgen::{DistinguishedName, DnType, DnValue};
        for value in [
            DnValue::Utf8String("board-0042".into()),
            DnValue::PrintableString("board-0042".try_into().unwrap()),
        ] {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "fleet");
            dn.push(DnType::CommonName, value);
            let (_d, path) = cert_with(dn);
            assert_eq!(common_name(&path).unwrap(), "board-0042");
        }
    }

    #[test]
    fn a_certificate_without_a_common_name_is_refused() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "fleet");
        let (_d, path) = cert_with(dn);
        assert!(matches!(common_name(&path), Err(FleetError::NoDeviceId(_))));
        let (d, _) = cert_with(rcgen::DistinguishedName::new());
        let junk = d.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(common_name(&junk), Err(FleetError::Pem { .. })));
    }
}
