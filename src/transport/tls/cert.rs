//! Certificates for development and tests (`sockets cert`): self-signed,
//! a CA, or signed by a CA made earlier, with the names (DNS names or IP
//! addresses) a client will verify. Keys are ECDSA P-256 (what rcgen makes
//! by default, and what every TLS peer here understands).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// DNS names and IP addresses the certificate is for; the first is
    /// also its common name.
    pub names: Vec<String>,
    /// Days from now the certificate stays valid (it is valid from a day
    /// ago, to allow for clocks that differ a little).
    pub days: i64,
    /// Make a CA, which can sign other certificates.
    pub ca: bool,
    /// Sign with this CA (its PEM certificate and key) instead of self-signing.
    pub issuer: Option<(String, String)>,
}

/// A certificate and its key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make the certificate")]
    Make(#[from] rcgen::Error),
    #[error("the issuer's key does not read as a PEM private key")]
    IssuerKey(#[source] rcgen::Error),
    #[error("the issuer's certificate does not read as a PEM certificate")]
    IssuerCertificate(#[source] rcgen::Error),
}

/// Makes a certificate as `request` says.
///
/// # Errors
/// [`CertError`] when a name is not a DNS name or IP address, or the
/// issuer's files do not parse.
pub fn make(request: &CertificateRequest) -> Result<MadeCertificate, CertError> {
    let mut params = CertificateParams::new(request.names.clone())?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(request.days);
    if let Some(first) = request.names.first() {
        params.distinguished_name.push(DnType::CommonName, first.as_str());
    }
    if request.ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = request.issuer.is_some();
    }
    let key = KeyPair::generate()?;
    let cert = match &request.issuer {
        None => params.self_signed(&key)?,
        Some((issuer_cert, issuer_key)) => {
            let issuer_key = KeyPair::from_pem(issuer_key).map_err(CertError::IssuerKey)?;
            let issuer = Issuer::from_ca_cert_pem(issuer_cert, issuer_key).map_err(CertError::IssuerCertificate)?;
            params.signed_by(&key, &issuer)?
        }
    };
    Ok(MadeCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(names: &[&str]) -> CertificateRequest {
        CertificateRequest {
            names: names.iter().map(|n| n.to_string()).collect(),
            days: 30,
            ca: false,
            issuer: None,
        }
    }

    #[test]
    fn names_become_dns_and_ip_subject_alternative_names() {
        let made = make(&request(&["localhost", "127.0.0.1", "::1"])).unwrap();
        assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(made.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = rustls::pki_types::CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(parsed.subject().to_string(), "CN=localhost");
        let names = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .clone();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!parsed.is_ca());
    }

    #[test]
    fn a_ca_signs_a_leaf() {
        let ca = make(&CertificateRequest {
            ca: true,
            ..request(&["test CA"])
        })
        .unwrap();
        let leaf = make(&CertificateRequest {
            issuer: Some((ca.cert_pem.clone(), ca.key_pem.clone())),
            ..request(&["client"])
        })
        .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(parsed.issuer().to_string(), "CN=test CA");
        let bad = make(&CertificateRequest {
            issuer: Some(("not a certificate".into(), ca.key_pem)),
            ..request(&["client"])
        })
        .unwrap_err();
        assert!(matches!(bad, CertError::IssuerCertificate(_)), "{bad}");
    }

    use rustls::pki_types::pem::PemObject;
}
