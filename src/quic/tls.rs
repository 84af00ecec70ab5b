//! TLS 1.3 with RFC 7250 raw public keys, as oxen-libquic speaks it (quic.md 1.2–1.6, 3):
//! the certificate is the 44-byte Ed25519 SubjectPublicKeyInfo of a node's (or a client's
//! throw-away) key, on both sides, with ALPN `oxenstorage`.
//!
//! Owns the two rustls configurations (server: present our key, require a raw-key client
//! certificate but accept any key; client: present a key, accept only the expected server
//! key) and the signing glue from `keys::NodeKeys`. Must not open sockets (`quic::endpoint`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    DigitallySignedStruct, DistinguishedName, Error, SignatureAlgorithm, SignatureScheme,
};

use crate::keys::NodeKeys;

/// The ALPN every libquic endpoint of the storage network requires (mandatory on both sides).
pub const ALPN: &[u8] = b"oxenstorage";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): what libquic skips, unparsed,
/// before the 32 key bytes (quic.md 3.4, `CERT_HEADER_SIZE` = 12).
pub const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The 44-byte raw-public-key certificate of an Ed25519 key.
pub fn spki(pubkey: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44);
    out.extend_from_slice(&SPKI_PREFIX);
    out.extend_from_slice(pubkey);
    out
}

/// The Ed25519 key inside a raw-public-key certificate, if it is exactly the canonical SPKI.
pub fn key_of_spki(cert: &[u8]) -> Option<[u8; 32]> {
    let key = cert.strip_prefix(&SPKI_PREFIX[..])?;
    key.try_into().ok()
}

/// The provider every QUIC config uses: aws-lc-rs, as the HTTPS side.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

/// Signs TLS handshakes with a node key (never exposing the seed to rustls).
#[derive(Debug)]
struct Ed25519Signer(Arc<NodeKeys>);

impl SigningKey for Ed25519Signer {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(Ed25519Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(spki(
            &self.0.pubkey_ed25519(),
        )))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

impl Signer for Ed25519Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.0.sign(message).to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn certified(keys: Arc<NodeKeys>) -> Arc<CertifiedKey> {
    let cert = CertificateDer::from(spki(&keys.pubkey_ed25519()));
    Arc::new(CertifiedKey::new(vec![cert], Arc::new(Ed25519Signer(keys))))
}

/// Checks a handshake signature by the raw Ed25519 key of `cert`. Only Ed25519 is allowed:
/// libquic keys are Ed25519, and anything else would be a key we cannot name a node by.
fn verify_raw(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    if dss.scheme != SignatureScheme::ED25519 || key_of_spki(cert).is_none() {
        return Err(Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
    }
    let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
    rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &algorithms())
}

/// Server side: a raw-key client certificate is required by the negotiation (libquic clients
/// offer only RawPublicKey, quic.md 1.2) and any key is accepted, as the storage server
/// installs no key-verify callback (quic.md 3.5); `ClientKeys` lets a caller see who it was.
#[derive(Debug)]
struct AnyRawClientKey;

impl ClientCertVerifier for AnyRawClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // libquic's server uses GNUTLS_CERT_REQUIRE: a client without a key gets nowhere there
        // either, and every connection is then attributable to a key (node-to-node checks).
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        key_of_spki(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is never used with QUIC".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_raw(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        // Must be true even though any key is accepted: otherwise rustls refuses libquic's
        // `client_certificate_type = [RawPublicKey]` offer (quic.md 1.2).
        true
    }
}

/// Client side: the server must prove the one Ed25519 key we expect (quic.md 3.4); there is
/// no CA, name or expiry. SNI is ignored by servers, so any name does.
#[derive(Debug)]
struct ExpectedServerKey([u8; 32]);

impl ServerCertVerifier for ExpectedServerKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match key_of_spki(end_entity) {
            Some(k) if k == self.0 => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is never used with QUIC".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_raw(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The rustls server configuration of a node's QUIC listener: TLS 1.3 only, our raw key,
/// a raw-key client certificate required, ALPN `oxenstorage`, no session tickets and no
/// 0-RTT (libquic drops 0-RTT and issues no tickets, quic.md 2.4).
pub fn server_config(keys: Arc<NodeKeys>) -> Result<rustls::ServerConfig, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyRawClientKey))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified(keys)),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The rustls client configuration for connecting to the node whose Ed25519 key is
/// `server_key`, presenting `own` as our raw-key client certificate (libsession uses a
/// throw-away key per connection; a node uses its identity, quic.md 1.13).
pub fn client_config(
    own: Arc<NodeKeys>,
    server_key: [u8; 32],
) -> Result<rustls::ClientConfig, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExpectedServerKey(server_key)))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified(own)),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips_and_refuses_other_shapes() {
        let k = [7u8; 32];
        let s = spki(&k);
        assert_eq!(s.len(), 44);
        assert_eq!(hex::encode(&s[..12]), "302a300506032b6570032100");
        assert_eq!(key_of_spki(&s), Some(k));
        assert_eq!(key_of_spki(&s[..43]), None);
        let mut longer = s.clone();
        longer.push(0);
        assert_eq!(key_of_spki(&longer), None);
        let mut other = s;
        other[6] = 0x2c; // not the Ed25519 OID
        assert_eq!(key_of_spki(&other), None);
    }

    #[test]
    fn configs_build_with_raw_keys_and_alpn() {
        let keys = Arc::new(NodeKeys::from_seed([1; 32]));
        let server = server_config(keys.clone()).expect("server config");
        assert_eq!(server.alpn_protocols, vec![b"oxenstorage".to_vec()]);
        let client = client_config(keys.clone(), keys.pubkey_ed25519()).expect("client config");
        assert_eq!(client.alpn_protocols, vec![b"oxenstorage".to_vec()]);
    }
}
