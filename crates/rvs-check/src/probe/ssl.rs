//! SSL_GET: TLS with rustls, then the HTTP_GET exchange.

use std::sync::Arc;

use super::http::{connect_failure, http_exchange};
use super::net::tcp_connect;
use crate::config::{CheckerConfig, SslCheck};
use crate::machine::ProbeResult;

mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// keepalived does not verify the certificate unless a CA is configured.
    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn client_config(
        ca_file: Option<&std::path::Path>,
    ) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let cfg = match ca_file {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| e.to_string())?;
                    roots.add(c).map_err(|e| e.to_string())?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(cfg)
    }
}

/// SSL_GET: TLS (rustls; certificate not verified unless `ca_file`), SNI when
/// `enable_sni` (sni_name, else the virtualhost), then as HTTP_GET.
pub async fn probe_ssl(
    cfg: &CheckerConfig,
    ssl: &SslCheck,
    url_index: Option<usize>,
) -> ProbeResult {
    use rustls::pki_types::ServerName;
    let Some(i) = url_index else {
        return ProbeResult::success();
    };
    let tls_cfg = match tls::client_config(ssl.ca_file.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => return ProbeResult::failure(format!("SSL setup error: {e}")),
    };
    let sni = if ssl.enable_sni {
        ssl.sni_name
            .clone()
            .or_else(|| ssl.http.urls.get(i).and_then(|u| u.virtualhost.clone()))
            .or_else(|| ssl.http.virtualhost.clone())
    } else {
        None
    };
    let server_name = match sni.and_then(|n| ServerName::try_from(n).ok()) {
        Some(n) => n,
        None => ServerName::IpAddress(cfg.connect.ip().into()),
    };
    let tcp = match tcp_connect(cfg).await {
        Ok(s) => s,
        Err(e) => return connect_failure(e),
    };
    let connector = tokio_rustls::TlsConnector::from(tls_cfg);
    let mut s = match tokio::time::timeout(cfg.connect_timeout, connector.connect(server_name, tcp))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            return ProbeResult::failure("SSL handshake/communication error connecting to")
        }
        Err(_) => return ProbeResult::failure("Timeout connecting"),
    };
    http_exchange(&mut s, &ssl.http, i, cfg).await
}
