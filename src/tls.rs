//! The node's self-signed TLS certificate and the rustls server configuration.
//!
//! Owns `tls_cert.pem` / `tls_key.pem` in the data directory: generating them (once, or again
//! when forced) and loading them into a `rustls::ServerConfig` on the aws-lc-rs provider.
//! Must not bind sockets or serve anything (that is `node`/`api`), and must not log the key.
//!
//! Session clients do not verify the certificate (they authenticate the node through the onion
//! layer encrypted to its X25519 key), so the certificate only has to be acceptable to every
//! client TLS stack; it carries the node's `.snode` address so an operator can tell whose it is.

use crate::keys::{NodeKeys, write_private_file};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// File name of the certificate inside the data directory.
pub const CERT_FILE: &str = "tls_cert.pem";
/// File name of the certificate's private key inside the data directory.
pub const KEY_FILE: &str = "tls_key.pem";

/// Errors of creating or loading the TLS certificate. Each variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Writing the certificate or key file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// rcgen could not generate the key or the certificate.
    #[error("cannot generate the TLS certificate")]
    Generate {
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM file could not be read or holds no usable item.
    #[error("cannot read PEM file {}", path.display())]
    Pem {
        /// The file being read.
        path: PathBuf,
        /// The PEM error (I/O, bad base64, no item of the expected kind).
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the protocol versions, the certificate or the key.
    #[error("cannot build the TLS server configuration")]
    Config {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
}

/// Makes sure `data_dir` holds a certificate and its key, and returns their paths
/// `(tls_cert.pem, tls_key.pem)`.
///
/// Existing files are kept unless `force`, so restarts do not change the certificate; when
/// either file is missing (or `force`), a new pair is generated and both are written atomically
/// with mode 0600. The key is written first, so a crash in between leaves no certificate
/// without its key, and the next call regenerates both.
pub fn ensure_certificate(
    data_dir: &Path,
    keys: &NodeKeys,
    force: bool,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if !force && cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let (cert_pem, key_pem) = generate(keys)?;
    write_private_file(&key_path, key_pem.as_bytes(), true).map_err(|source| TlsError::Write {
        path: key_path.clone(),
        source,
    })?;
    write_private_file(&cert_path, cert_pem.as_bytes(), true).map_err(|source| {
        TlsError::Write {
            path: cert_path.clone(),
            source,
        }
    })?;
    Ok((cert_path, key_path))
}

/// Generates a self-signed certificate and its key, both as PEM.
fn generate(keys: &NodeKeys) -> Result<(String, Zeroizing<String>), TlsError> {
    let generate_err = |source| TlsError::Generate { source };
    // ECDSA P-256: every client TLS stack (Android, iOS, Electron/BoringSSL, libcurl) negotiates
    // it and it is cheap to handshake. The C++ server used RSA; Ed25519 certificates are still
    // refused by some platform stacks. Clients do not pin or verify it (see the module doc).
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_err)?;
    let address = keys.snode_address();
    let mut params = rcgen::CertificateParams::new(vec![address.clone(), "localhost".to_string()])
        .map_err(generate_err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, address);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // Long validity: nobody renews a self-signed node certificate, and an expired one would
    // break clients that do check dates. 9999-12-31 is RFC 5280's "no expiry" date.
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    let cert = params.self_signed(&key).map_err(generate_err)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// Loads the certificate chain and key into a rustls server configuration on the aws-lc-rs
/// provider (chosen explicitly: no reliance on a process-wide default provider), with TLS 1.2
/// and 1.3 and ALPN `h2`, `http/1.1`.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(pem_err(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert_path))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.to_path_buf(),
            source: rustls::pki_types::pem::Error::NoItemsFound,
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(pem_err(key_path))?;
    let config_err = |source| TlsError::Config { source };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(config_err)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(config_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    /// Runs a TLS handshake in memory between `server` and a client that trusts `cert` and
    /// connects to `name`, offering `alpn`. Returns the negotiated ALPN protocol.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        cert: CertificateDer<'static>,
        name: &str,
        alpn: &[u8],
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client_config.alpn_protocols = vec![alpn.to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), server_name)?;
        let mut server = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(server.alpn_protocol().map(<[u8]>::to_vec));
            }
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn generate_load_and_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NodeKeys::generate();
        let (cert_path, key_path) = ensure_certificate(dir.path(), &keys, false).unwrap();
        assert_eq!(cert_path, dir.path().join(CERT_FILE));
        assert_eq!(key_path, dir.path().join(KEY_FILE));
        for p in [&cert_path, &key_path] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert!(
            fs::read_to_string(&key_path)
                .unwrap()
                .contains("BEGIN PRIVATE KEY")
        );

        let config = server_config(&cert_path, &key_path).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let cert = CertificateDer::from_pem_file(&cert_path).unwrap();
        // The certificate is valid for the node's .snode address and for localhost, and the
        // server negotiates both ALPN protocols.
        let alpn = handshake(config.clone(), cert.clone(), &keys.snode_address(), b"h2").unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        let alpn = handshake(config.clone(), cert.clone(), "localhost", b"http/1.1").unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        // ... and for nothing else.
        let other = NodeKeys::generate().snode_address();
        assert!(handshake(config, cert, &other, b"h2").is_err());
    }

    #[test]
    fn kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NodeKeys::generate();
        let (cert_path, key_path) = ensure_certificate(dir.path(), &keys, false).unwrap();
        let cert1 = fs::read(&cert_path).unwrap();
        let key1 = fs::read(&key_path).unwrap();
        ensure_certificate(dir.path(), &keys, false).unwrap();
        assert_eq!(fs::read(&cert_path).unwrap(), cert1);
        assert_eq!(fs::read(&key_path).unwrap(), key1);

        ensure_certificate(dir.path(), &keys, true).unwrap();
        assert_ne!(fs::read(&cert_path).unwrap(), cert1);
        assert_ne!(fs::read(&key_path).unwrap(), key1);
        server_config(&cert_path, &key_path).unwrap();

        // A lone key (crash between the two writes) is replaced by a fresh pair.
        fs::remove_file(&cert_path).unwrap();
        let key2 = fs::read(&key_path).unwrap();
        ensure_certificate(dir.path(), &keys, false).unwrap();
        assert_ne!(fs::read(&key_path).unwrap(), key2);
        server_config(&cert_path, &key_path).unwrap();
        // Only the two files: no temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn load_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join(CERT_FILE);
        let key = dir.path().join(KEY_FILE);
        let err = server_config(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { ref path, .. } if *path == cert));
        fs::write(&cert, "not a pem").unwrap();
        let err = server_config(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { ref path, .. } if *path == cert));

        let keys = NodeKeys::generate();
        let (cert, _) = ensure_certificate(dir.path(), &keys, true).unwrap();
        // A key that does not belong to the certificate is refused by rustls.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = ensure_certificate(other.path(), &keys, false).unwrap();
        let err = server_config(&cert, &other_key).unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");
    }
}
