//! TLS for `wss://`: a certificate authority and a server certificate made
//! once per process, the rustls configurations of the servers and of the
//! client, and the PEM files child-process servers and outside clients
//! read.
//!
//! Nothing is provided from outside and nothing is trusted blindly: the
//! client verifies every server against the CA made here (or a CA file
//! given with `--ca`), never with verification turned off. Every rustls
//! configuration names its crypto provider (ring), so no process-wide
//! default has to be installed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The certificates of this process, and where their PEM files are.
pub struct Certs {
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    /// The CA certificate: what a client outside this process trusts.
    pub ca_pem: PathBuf,
    /// The server certificate followed by the CA's (the chain a server sends).
    pub chain_pem: PathBuf,
    /// The server certificate's private key, PKCS#8.
    pub key_pem: PathBuf,
}

/// What the server certificate is for, besides this host's addresses:
/// the names a client on this machine uses.
const SERVER_NAMES: &[&str] = &["localhost"];

/// The key algorithm of both certificates, for results: ECDSA P-256, what
/// rcgen makes by default and what most public sites now serve.
pub const KEY_ALGORITHM: &str = "ECDSA P-256";

/// The certificates, made on first use, with their PEM files in a
/// directory of this process's own under the temporary directory.
pub fn certs() -> anyhow::Result<&'static Certs> {
    static CERTS: OnceLock<Result<Certs, String>> = OnceLock::new();
    CERTS
        .get_or_init(|| make_certs().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("making the TLS certificates: {e}"))
}

fn make_certs() -> anyhow::Result<Certs> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wsbench test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wsbench server");
    for ip in host_addresses() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    let dir = std::env::temp_dir().join(format!("wsbench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let ca_pem = write("ca.pem", ca.pem())?;
    let chain_pem = write("chain.pem", format!("{}{}", cert.pem(), ca.pem()))?;
    let key_pem = write("key.pem", key.serialize_pem())?;
    Ok(Certs {
        ca_der: ca.der().clone(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        ca_pem,
        chain_pem,
        key_pem,
    })
}

/// Loopback and every address of this host's interfaces, so that
/// `wsbench serve --tls --addr 0.0.0.0:PORT` is verifiable from another
/// machine at any of the addresses it prints.
fn host_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            if !ips.contains(&iface.ip()) {
                ips.push(iface.ip());
            }
        }
    }
    ips
}

/// ring, with X25519 as the first key exchange, as browsers and OpenSSL
/// order them (ring's own default now puts P-384 first, which costs each
/// side of a handshake several times more). rustls deprecates ring for
/// lacking post-quantum hybrids; the Python and Node servers' OpenSSL 3.0
/// lacks them too, so every stack negotiates the same X25519.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

/// The servers' configuration: rustls's safe defaults (TLS 1.3 and 1.2,
/// its session cache and TLS 1.3 tickets as it sends them by default),
/// HTTP/1.1 offered by ALPN. Made once; every server shares it.
pub fn server_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    static CONFIG: OnceLock<Result<Arc<rustls::ServerConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| make_server_config().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("the servers' TLS configuration: {e}"))
}

fn make_server_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = certs()?;
    let chain = vec![certs.cert_der.clone(), certs.ca_der.clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client's configuration: it trusts the CA made here and, if given,
/// the CA certificates in `extra_ca` (a PEM file), and nothing else.
/// Session resumption is off, so every handshake the client makes is a
/// full one (the handshake rate says so).
pub fn client_config(extra_ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs()?.ca_der.clone())?;
    if let Some(path) = extra_ca {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("parsing the CA file {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {}", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(
            added > 0,
            "the CA file {} holds no PEM certificate",
            path.display()
        );
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The acceptor the tokio-based servers wrap their connections in.
pub fn acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    Ok(tokio_rustls::TlsAcceptor::from(server_config()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_hold_what_the_configurations_use() {
        let certs = certs().unwrap();
        let ca: Vec<_> = CertificateDer::pem_file_iter(&certs.ca_pem)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ca, vec![certs.ca_der.clone()]);
        let chain: Vec<_> = CertificateDer::pem_file_iter(&certs.chain_pem)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain, vec![certs.cert_der.clone(), certs.ca_der.clone()]);
        assert!(PrivateKeyDer::from_pem_file(&certs.key_pem).is_ok());
        server_config().unwrap();
        client_config(None).unwrap();
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("wsbench-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(Some(&path)).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
