//! Clients for one server, with TLS as the settings ask (the system's roots, a CA file, a client
//! certificate), and the diagnosis of a handshake gone wrong.

use ranq_runtime::settings::RedisSettings;

use crate::error::RedisError;

/// How long the plaintext probe of a silent TLS server waits.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn read(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|source| RedisError::TlsFile { key, path: path.display().to_string(), source })
}

/// The client for the server at `url` under `tls`: the system's roots, or the CA file, and a
/// client certificate for mutual TLS. `tls_insecure` is redis-rs's `#insecure`.
pub(crate) fn client(url: &str, tls: &RedisSettings) -> Result<redis::Client, RedisError> {
    let shown = ranq_core::redact_url(url);
    let url = if tls.tls_insecure && url.starts_with("rediss://") && !url.ends_with("#insecure") {
        format!("{url}#insecure")
    } else {
        url.to_owned()
    };
    let bad_url = |_| RedisError::BadUrl { url: shown.clone() };
    // The TLS files are for TLS URLs: one config file may serve a plaintext Redis in one place
    // and a TLS one in another.
    if !url.starts_with("rediss://") {
        return redis::Client::open(url.as_str()).map_err(bad_url);
    }
    match certificates(tls)? {
        Some(certs) => redis::Client::build_with_tls(url.as_str(), certs).map_err(bad_url),
        None => redis::Client::open(url.as_str()).map_err(bad_url),
    }
}

/// The CA and client certificate the settings name, read from their files; `None` when they
/// name neither (the system's roots, no client certificate).
pub(crate) fn certificates(tls: &RedisSettings) -> Result<Option<redis::TlsCertificates>, RedisError> {
    if tls.tls_ca_file.is_none() && tls.tls_cert_file.is_none() {
        return Ok(None);
    }
    let root_cert = tls.tls_ca_file.as_deref().map(|p| read("redis.tls_ca_file", p)).transpose()?;
    let client_tls = match (&tls.tls_cert_file, &tls.tls_key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("redis.tls_cert_file", cert)?,
            client_key: read("redis.tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
}

/// Whether a failed connect failed in the TLS handshake (a certificate that does not verify, a
/// TLS client answered in plaintext) rather than for want of a server. rustls's errors reach
/// here as IO errors, told apart by their text.
pub(crate) fn is_tls_failure(error: &redis::RedisError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    ["certificate", "tls", "handshake", "corrupt message", "invalid message", "unknownissuer"]
        .iter()
        .any(|sign| text.contains(sign))
}

/// Whether the TLS address `addr` is a plaintext Redis after all: a TLS client's hello is no
/// command to it, so it waits for more and the handshake never ends. A plaintext PING tells.
pub(crate) async fn answers_plaintext(addr: &redis::ConnectionAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis::ConnectionAddr::TcpTls { host, port, .. } = addr else { return false };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Some(true)))
}
