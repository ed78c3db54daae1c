//! TLS for a view served beyond loopback: a certificate and key from files, or a self-signed
//! pair made at first start and kept (key owner-only) for the next ones, so that a browser
//! asked once to trust it keeps trusting it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or key, or a malformed one.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The certificate could not be made, or rustls refused the pair.
    #[error("TLS: {0}")]
    Config(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// These PEM files (a certificate chain, its private key).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
    },
    /// A self-signed certificate for the view's names, made once in this folder.
    SelfSigned {
        /// Where it is kept.
        dir: PathBuf,
    },
}

/// The server's TLS configuration for `source`; a self-signed certificate names `names`.
pub fn server_config(
    source: &CertSource,
    names: &[String],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertSource::SelfSigned { dir } => self_signed(dir, names)?,
    };
    let pem = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| pem(&cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(&cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(&cert, "no certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| pem(&key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The self-signed pair in `dir`, made now if it is not there yet.
fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("view-cert.pem");
    let key = dir.join("view-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Config(format!("making a self-signed certificate: {e}")))?;
    write_new(&key, made.signing_key.serialize_pem().as_bytes(), 0o600).map_err(io(&key))?;
    write_new(&cert, made.cert.pem().as_bytes(), 0o644).map_err(io(&cert))?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for the view");
    Ok((cert, key))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_self_signed_pair_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource::SelfSigned {
            dir: dir.path().join("tls"),
        };
        let names = vec!["jetson.local".to_owned()];
        server_config(&source, &names).unwrap();
        let key = dir.path().join("tls/view-key.pem");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&key).unwrap();
        server_config(&source, &names).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), before, "kept, not remade");
        let bad = CertSource::Files {
            cert: key.clone(),
            key: key.clone(),
        };
        assert!(matches!(
            server_config(&bad, &names),
            Err(TlsError::Pem { .. })
        ));
    }
}
