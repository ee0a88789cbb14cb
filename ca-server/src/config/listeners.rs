//! Where the CA listens: `listen` (the API), `metrics_listen` (monitoring)
//! and `[tls]`. The API is served in plain HTTP only on loopback, since ID
//! tokens travel in it, and the monitoring listener never shares the API's
//! socket, so that `/metrics` is reachable only where an operator put it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::Deserialize;

/// Where `/metrics` is served unless the config says otherwise: loopback,
/// so that counts of issuances, refusals and issuers stay on the CA's host
/// until an operator chooses to expose them.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The `[tls]` section as written; its paths are still relative to the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

pub(super) fn default_metrics_listen() -> String {
    DEFAULT_METRICS_LISTEN.to_string()
}

/// Checks `listen` and `metrics_listen` as written, given whether a `[tls]`
/// section is present; returns them as `(listen, metrics_listen)`.
pub(super) fn check_listeners(
    listen: &str,
    metrics_listen: &str,
    tls: bool,
) -> Result<(SocketAddr, SocketAddr), String> {
    let listen: SocketAddr = listen.parse().map_err(|_| {
        format!("listen: {listen:?} is not an address:port (e.g. \"127.0.0.1:8443\")")
    })?;
    if !tls && !listen.ip().is_loopback() {
        return Err(format!(
            "listen: {listen} is not a loopback address, and plain HTTP would send ID tokens \
             in clear text: add a [tls] section or listen on 127.0.0.1"
        ));
    }
    let metrics_listen: SocketAddr = metrics_listen.parse().map_err(|_| {
        format!(
            "metrics_listen: {metrics_listen:?} is not an address:port (e.g. \"{DEFAULT_METRICS_LISTEN}\")"
        )
    })?;
    if metrics_listen.port() != 0 && metrics_listen.port() == listen.port() {
        let same_socket = metrics_listen.ip() == listen.ip()
            || metrics_listen.ip().is_unspecified()
            || listen.ip().is_unspecified();
        if same_socket {
            return Err(format!(
                "metrics_listen: {metrics_listen} overlaps listen ({listen}); /metrics has \
                 its own listener: give it another port (default {DEFAULT_METRICS_LISTEN})"
            ));
        }
    }
    Ok((listen, metrics_listen))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{parse, MINIMAL};

    #[test]
    fn plain_http_only_on_loopback() {
        let err = parse(&MINIMAL.replace("127.0.0.1:8443", "0.0.0.0:8443")).expect_err("public");
        assert!(err.contains("[tls]"), "{err}");
        let with_tls = format!("{MINIMAL}\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
            .replace("127.0.0.1:8443", "0.0.0.0:8443");
        assert!(parse(&with_tls).is_ok());
    }

    #[test]
    fn metrics_listen_is_its_own_socket() {
        let with = |line: &str| parse(&MINIMAL.replace("data_dir", &format!("{line}\ndata_dir")));
        let config = with("metrics_listen = \"10.0.0.5:9100\"").expect("valid");
        assert_eq!(config.metrics_listen.to_string(), "10.0.0.5:9100");
        for overlapping in [
            "metrics_listen = \"127.0.0.1:8443\"",
            "metrics_listen = \"0.0.0.0:8443\"",
        ] {
            let err = with(overlapping).expect_err(overlapping);
            assert!(err.contains("metrics_listen"), "{err}");
        }
        // Another address on the same port is another socket; port 0 picks
        // a free port for each.
        assert!(with("metrics_listen = \"127.0.0.2:8443\"").is_ok());
        let both_free = MINIMAL
            .replace("127.0.0.1:8443", "127.0.0.1:0")
            .replace("data_dir", "metrics_listen = \"127.0.0.1:0\"\ndata_dir");
        assert!(parse(&both_free).is_ok());
    }
}
