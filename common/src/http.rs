//! HTTP towards identity providers and the CA, with two guarantees that both
//! sides need: a redirect is never followed, and a body is never buffered
//! past a cap.
//!
//! Redirects: discovery documents, JWKS and token endpoints are taken
//! literally. A provider (or anyone on its path) that answers with a redirect
//! could otherwise send the CA's or the client's requests, tokens included,
//! to an address of its choosing; `openidconnect` asks for exactly this of the
//! client it is given. Every client either side builds starts from
//! [`client_builder`].
//!
//! Caps: a misbehaving server must not make the CA or the client buffer
//! without end, so every body is read through [`read_capped`], and
//! [`OidcHttp`], the adapter through which `openidconnect` speaks, does the
//! same. The caps themselves belong to each caller.

use std::future::Future;
use std::pin::Pin;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

use crate::error_chain;

/// A `reqwest` client builder that never follows redirects and names
/// `user_agent`; callers add their timeouts and trusted roots.
pub fn client_builder(user_agent: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
}

/// The body of `response`, refused with [`HttpError::TooLarge`] as soon as it
/// grows past `limit` bytes, before the excess is kept.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError::Transport(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The HTTP client interface of `openidconnect` over a shared `reqwest`
/// client (which should come from [`client_builder`], so that redirects are
/// answered, not followed), reading each answer through [`read_capped`].
/// Pass `&OidcHttp::new(&client, limit)` wherever `openidconnect` asks for
/// an async HTTP client (`discover_async`, `request_async`).
#[derive(Debug, Clone, Copy)]
pub struct OidcHttp<'a> {
    client: &'a reqwest::Client,
    limit: usize,
}

impl<'a> OidcHttp<'a> {
    /// Requests go through `client`; answers over `limit` bytes are refused.
    pub fn new(client: &'a reqwest::Client, limit: usize) -> Self {
        OidcHttp { client, limit }
    }

    /// Sends `request` and reads its answer, whatever its status (an OAuth
    /// error comes with a 4xx status and a body `openidconnect` reads).
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        let mut builder = openidconnect::http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = read_capped(response, self.limit).await?;
        builder
            .body(body)
            .map_err(|e| HttpError::Transport(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for OidcHttp<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// Why an HTTP exchange gave no usable body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request could not be sent, or the answer broke off; the text is
    /// the whole [`error_chain`].
    #[error("{0}")]
    Transport(String),
    /// The body grew past the cap.
    #[error("response over {}", size(*.limit))]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// `limit` bytes for a person: whole KiB when it is at least one.
fn size(limit: usize) -> String {
    match limit / 1024 {
        0 => format!("{limit} bytes"),
        kib => format!("{kib} KiB"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A loopback server that answers one request with `response`, as given;
    /// its URL.
    async fn answer_once(response: impl Into<String>) -> String {
        let response = response.into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
        url
    }

    fn client() -> reqwest::Client {
        client_builder("jit-ssh-common-test").build().unwrap()
    }

    fn get(url: &str) -> HttpRequest {
        openidconnect::http::Request::get(format!("{url}/.well-known/openid-configuration"))
            .body(Vec::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let url = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(read_capped(response, 5).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused() {
        let url = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello!").await;
        let response = client().get(&url).send().await.unwrap();
        let error = read_capped(response, 5).await.unwrap_err();
        assert_eq!(error, HttpError::TooLarge { limit: 5 });
        assert_eq!(error.to_string(), "response over 5 bytes");
        assert_eq!(
            HttpError::TooLarge { limit: 1024 * 1024 }.to_string(),
            "response over 1024 KiB"
        );
    }

    #[tokio::test]
    async fn the_adapter_passes_status_headers_and_body_on() {
        let url = answer_once(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             content-length: 27\r\n\r\n{\"error\":\"invalid_request\"}",
        )
        .await;
        let http = client();
        let response = OidcHttp::new(&http, 1024).call(get(&url)).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.body(), br#"{"error":"invalid_request"}"#);
    }

    #[tokio::test]
    async fn the_adapter_answers_a_redirect_instead_of_following_it() {
        let elsewhere = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nfollowed").await;
        let url = answer_once(format!(
            "HTTP/1.1 302 Found\r\nlocation: {elsewhere}/\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let http = client();
        let response = OidcHttp::new(&http, 1024).call(get(&url)).await.unwrap();
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], format!("{elsewhere}/"));
        assert!(response.body().is_empty());
    }

    #[tokio::test]
    async fn the_adapter_caps_what_it_reads() {
        let url = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello!").await;
        let http = client();
        let error = OidcHttp::new(&http, 5).call(get(&url)).await.unwrap_err();
        assert_eq!(error, HttpError::TooLarge { limit: 5 });
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transport_error_with_its_causes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let http = client();
        match OidcHttp::new(&http, 1024).call(get(&url)).await {
            Err(HttpError::Transport(chain)) => {
                assert!(chain.contains(": "), "causes spelled out: {chain}")
            }
            other => panic!("{other:?}"),
        }
    }
}
