//! The dev CA's defence against DNS rebinding: it answers only requests
//! addressed to itself, by its own address or a loopback name with its port.
//!
//! The dev identity provider signs anyone in without a password, and a
//! browser lets a page read the answers of its own origin. A page at
//! `evil.example` whose name the attacker then points at 127.0.0.1 (DNS
//! rebinding) stays that origin for the browser while it talks to the dev
//! CA on the visitor's machine: it could sign in as a dev user and read the
//! tokens. The browser still names the page's host in the request
//! (`Host: evil.example:8443`), and nothing but a rebinding page or a
//! misconfigured proxy sends a name that is not loopback to a loopback
//! listener, so every such request is refused with 421 before any handler
//! runs, on every route of the dev listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::http::ApiError;

/// `router`, answering only requests whose `Host` (and request-target
/// authority, when there is one) names `local`, the address it is served
/// on, or a loopback name with its port.
pub fn answer_only_for(router: Router, local: SocketAddr) -> Router {
    let allowed = Arc::new(AllowedHosts::for_listener(local));
    router.layer(middleware::from_fn_with_state(allowed, check_host))
}

/// The host names, with port, a dev listener answers for.
#[derive(Debug)]
struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    fn for_listener(local: SocketAddr) -> AllowedHosts {
        let port = local.port();
        let mut names = vec![local.to_string()];
        for name in ["127.0.0.1", "localhost", "[::1]"] {
            let name = format!("{name}:{port}");
            if !names.contains(&name) {
                names.push(name);
            }
        }
        // A browser leaves out the port of a URL that uses http's default.
        if port == 80 {
            let bare: Vec<String> = names
                .iter()
                .filter_map(|n| n.strip_suffix(":80").map(String::from))
                .collect();
            names.extend(bare);
        }
        AllowedHosts { names }
    }

    /// Whether `authority` (a `Host` value) is one of the names, which
    /// compare without regard to case as host names do.
    fn allows(&self, authority: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(authority))
    }

    /// Whether every name `request` is addressed by is allowed, and it
    /// names at least one (HTTP/1.1 requires `Host`; HTTP/2 carries the
    /// authority in the request-target).
    fn admits(&self, request: &Request) -> bool {
        let headers = request.headers().get_all(header::HOST);
        let mut named = false;
        for value in headers {
            named = true;
            if !value.to_str().is_ok_and(|host| self.allows(host)) {
                return false;
            }
        }
        if let Some(authority) = request.uri().authority() {
            named = true;
            if !self.allows(authority.as_str()) {
                return false;
            }
        }
        named
    }
}

async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    if allowed.admits(&request) {
        return next.run(request).await;
    }
    ApiError::misdirected(format!(
        "jit-ssh-ca dev answers only requests whose Host is one of {}; requests naming another \
         host are refused, so that a web page cannot reach its password-less sign-in through \
         DNS rebinding",
        allowed.names.join(", ")
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    fn allowed(local: &str) -> AllowedHosts {
        AllowedHosts::for_listener(local.parse().expect("address"))
    }

    #[test]
    fn loopback_names_with_the_listeners_port_only() {
        let hosts = allowed("127.0.0.1:8443");
        for ok in [
            "127.0.0.1:8443",
            "localhost:8443",
            "LocalHost:8443",
            "[::1]:8443",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8443",
            "localhost",
            "127.0.0.1",
            "localhost:8444",
            "localhost.:8443",
            "127.0.0.2:8443",
            "localhost.evil.example:8443",
            "127.0.0.1:8443.evil.example",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        // Its own address, when it is another loopback one; the default
        // port may go unsaid.
        assert!(allowed("127.0.0.2:9000").allows("127.0.0.2:9000"));
        assert!(allowed("[::1]:9000").allows("[::1]:9000"));
        assert!(allowed("127.0.0.1:80").allows("localhost"));
        assert!(!allowed("127.0.0.1:8443").allows("127.0.0.2:8443"));
    }

    async fn status(request: Request<Body>) -> StatusCode {
        let local: SocketAddr = "127.0.0.1:8443".parse().expect("address");
        let routes = Router::new()
            .route("/x", get(|| async { "ok" }))
            .fallback(|| async { StatusCode::NOT_FOUND });
        let router = answer_only_for(routes, local);
        router.oneshot(request).await.expect("infallible").status()
    }

    fn request(uri: &str, hosts: &[&str]) -> Request<Body> {
        let mut builder = axum::http::Request::get(uri);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn every_route_refuses_another_host_with_421() {
        assert_eq!(
            status(request("/x", &["localhost:8443"])).await,
            StatusCode::OK
        );
        for refused in [
            request("/x", &["evil.example:8443"]),
            request("/nowhere", &["evil.example:8443"]),
            request("/x", &[]),
            request("/x", &["localhost:8443", "evil.example:8443"]),
            // An absolute request-target names the host the request is for.
            request("http://evil.example:8443/x", &["localhost:8443"]),
        ] {
            assert_eq!(status(refused).await, StatusCode::MISDIRECTED_REQUEST);
        }
        assert_eq!(
            status(request("http://127.0.0.1:8443/x", &["127.0.0.1:8443"])).await,
            StatusCode::OK
        );
    }
}
