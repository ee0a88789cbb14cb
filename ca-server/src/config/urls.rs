//! Which remote URLs the configuration accepts: an identity provider or a
//! webhook is reached over https, or over plain http only on loopback (test
//! and development servers), so that neither tokens nor access-request
//! events cross a network in clear text.

/// Whether `url` is an https URL, or a plain http one on loopback (test and
/// development servers); the host is compared whole, so that
/// `http://localhost.example.com` is not loopback.
pub(super) fn https_or_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| match url.scheme() {
        "https" => url.host().is_some(),
        "http" => ca_proto::is_loopback_host(url.host_str()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_hosts_only() {
        for url in [
            "https://idp.example.com",
            "http://127.0.0.1:9000",
            "http://localhost/realms/x",
            "http://[::1]:8080",
        ] {
            assert!(https_or_loopback(url), "{url}");
        }
        for url in [
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://localhost@idp.example.com",
            "http://idp.example.com",
            "ftp://127.0.0.1",
            "https://",
        ] {
            assert!(!https_or_loopback(url), "{url}");
        }
    }
}
