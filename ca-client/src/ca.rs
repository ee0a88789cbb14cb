//! Client side of the jit-ssh CA API: fetch the CA's published configuration
//! and exchange an ID token plus a proof of possession for a certificate.
//!
//! The interactive login, agent and renewal live on top of this; scripts and
//! workloads (a CI job holding an ID token) can use it directly. Errors keep
//! the difference between "not reachable", "TLS not trusted" and "refused",
//! because a person fixes each differently. A certificate or access request
//! the CA answers with 503 is asked for once more with the same token, which
//! the CA answers with what it recorded if the first attempt was committed.

use std::time::{Duration, SystemTime};

use ca_proto::{
    own_revocation_message, proof_message, CaConfig, ErrorBody, ErrorCode, OwnRevocationRequest,
    RevocationResponse, UserCertRequest, UserCertResponse, OWN_REVOCATION_NAMESPACE,
    PROOF_NAMESPACE,
};
use jit_ssh_common::error_chain;
use jit_ssh_common::http::{client_builder, read_capped};
use ssh_key::{HashAlg, LineEnding, PrivateKey};

/// Errors talking to the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The CA could not be reached or answered garbage.
    #[error("cannot reach the CA at {url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The CA's TLS certificate is not trusted (private root not given?).
    #[error("the TLS certificate of {url} is not trusted: {message}")]
    Tls {
        /// The URL.
        url: String,
        /// What the TLS library said.
        message: String,
    },
    /// The CA refused, with its stable error code.
    #[error("the CA refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable error code from the body, as sent;
        /// [`ClientError::refusal_code`] gives it typed.
        code: String,
        /// The CA's explanation.
        message: String,
    },
    /// The key could not be encoded or could not sign the proof.
    #[error("key: {0}")]
    Key(#[from] ssh_key::Error),
    /// Something answered at the URL, but not a jit-ssh CA: `/v1/config`
    /// is not found there, or is not a CA's configuration.
    #[error("no jit-ssh CA at {url} ({what})")]
    NotACa {
        /// The configuration URL tried.
        url: String,
        /// What answered instead.
        what: String,
    },
}

impl ClientError {
    /// The CA's error code when it refused (a code this client does not
    /// know is [`ErrorCode::Other`]); `None` for any other failure.
    pub fn refusal_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(ErrorCode::from(code.as_str())),
            ClientError::Transport { .. }
            | ClientError::Tls { .. }
            | ClientError::Key(_)
            | ClientError::NotACa { .. } => None,
        }
    }
}

/// A connection to one CA.
#[derive(Debug, Clone)]
pub struct CaClient {
    base: String,
    http: reqwest::Client,
}

/// The CA's configuration together with the time its `Date` header gave.
#[derive(Debug, Clone)]
pub struct FetchedConfig {
    /// What the CA published.
    pub config: CaConfig,
    /// The CA's clock when it answered, when it sent a `Date` header.
    pub server_date: Option<SystemTime>,
}

/// The HTTP client every jit-ssh request uses: no redirects (an identity
/// provider or CA that redirects is misconfigured or hostile), bounded
/// timeouts, and the system roots plus `extra_root_pem`.
pub fn http_client(extra_root_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = client_builder(concat!("jit-ssh/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(pem) = extra_root_pem {
        let root = reqwest::Certificate::from_pem(pem).map_err(|e| e.to_string())?;
        builder = builder.add_root_certificate(root);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Whether bearer tokens may be sent to `url`: https, or plain http on
/// loopback only (test and development servers; the CA itself serves plain
/// http on loopback only).
pub fn may_carry_tokens(url: &reqwest::Url) -> bool {
    url.scheme() == "https"
        || (url.scheme() == "http" && ca_proto::is_loopback_host(url.host_str()))
}

impl CaClient {
    /// A client for the CA at `base_url` (e.g. `https://ca.example.com`),
    /// trusting the system roots plus `extra_root_pem` when given.
    pub fn new(base_url: &str, extra_root_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let transport = |message: String| ClientError::Transport {
            url: base_url.to_string(),
            message,
        };
        let http = http_client(extra_root_pem).map_err(transport)?;
        Ok(Self::with_http(base_url, http))
    }

    /// A client for the CA at `base_url` sharing an existing HTTP client.
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        CaClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The CA's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The HTTP client, to reuse for the identity provider.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<CaConfig, ClientError> {
        Ok(self.fetch_config().await?.config)
    }

    /// `GET /v1/config`, also returning the CA's `Date` for a clock-skew check.
    pub async fn fetch_config(&self) -> Result<FetchedConfig, ClientError> {
        let url = format!("{}/v1/config", self.base);
        let response = self.http.get(&url).send().await;
        let server_date = response
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get(reqwest::header::DATE))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let answered = response.as_ref().ok().map(|r| r.status());
        // A server that answers, but not as a CA would (a 404, or a page
        // that is not a CA's configuration), is the wrong URL, not a CA
        // that refused.
        let config = decode(&url, response)
            .await
            .map_err(|error| match (answered, error) {
                (Some(status), ClientError::Refused { code, message, .. })
                    if status == reqwest::StatusCode::NOT_FOUND =>
                {
                    ClientError::NotACa {
                        url: url.clone(),
                        what: format!("HTTP {status}, {code}: {message}"),
                    }
                }
                (Some(status), ClientError::Transport { message, .. })
                    if status == reqwest::StatusCode::NOT_FOUND || status.is_success() =>
                {
                    // A non-JSON 404's message is its status again.
                    let what = if status.is_success() {
                        format!("HTTP {status}, {message}")
                    } else {
                        format!("HTTP {status}")
                    };
                    ClientError::NotACa {
                        url: url.clone(),
                        what,
                    }
                }
                (_, error) => error,
            })?;
        Ok(FetchedConfig {
            config,
            server_date,
        })
    }

    /// Certifies `key` with `id_token`, signing the proof of possession.
    /// `principals` empty means everything the policy grants; `ttl` `None`
    /// means the CA's default.
    pub async fn request_user_certificate(
        &self,
        id_token: &str,
        key: &PrivateKey,
        principals: &[String],
        ttl: Option<Duration>,
    ) -> Result<UserCertResponse, ClientError> {
        let request = UserCertRequest {
            public_key: key.public_key().to_openssh()?,
            principals: principals.to_vec(),
            ttl: ttl.map(|t| t.as_secs()),
            proof: sign_proof(key, id_token)?,
        };
        let url = format!("{}/v1/certs/user", self.base);
        let post = self.http.post(&url).bearer_auth(id_token).json(&request);
        decode(&url, send_retrying_once(post).await).await
    }

    /// `POST /v1/revocations/own`: revokes the certificate `serial` of `key`,
    /// proving possession of the key by an SSHSIG over the serial.
    pub async fn revoke_own(
        &self,
        serial: &str,
        key: &PrivateKey,
    ) -> Result<RevocationResponse, ClientError> {
        let signature = key.sign(
            OWN_REVOCATION_NAMESPACE,
            HashAlg::Sha512,
            &own_revocation_message(serial),
        )?;
        let request = OwnRevocationRequest {
            serial: serial.to_string(),
            signature: signature.to_pem(LineEnding::LF)?,
        };
        let url = format!("{}/v1/revocations/own", self.base);
        let response = self.http.post(&url).json(&request).send().await;
        decode(&url, response).await
    }

    /// `POST /v1/requests`: asks for principals by access request.
    pub async fn create_access_request(
        &self,
        id_token: &str,
        request: &ca_proto::AccessRequestCreate,
    ) -> Result<ca_proto::AccessRequestView, ClientError> {
        let url = format!("{}/v1/requests", self.base);
        let post = self.http.post(&url).bearer_auth(id_token).json(request);
        decode(&url, send_retrying_once(post).await).await
    }

    /// `GET /v1/requests[?pending=true]`: own requests and those the caller
    /// may decide.
    pub async fn access_requests(
        &self,
        id_token: &str,
        pending: bool,
    ) -> Result<ca_proto::AccessRequestList, ClientError> {
        let url = format!(
            "{}/v1/requests{}",
            self.base,
            if pending { "?pending=true" } else { "" }
        );
        let response = self.http.get(&url).bearer_auth(id_token).send().await;
        decode(&url, response).await
    }

    /// `GET /v1/requests?needs_review=true`: unreviewed break-glass requests
    /// the caller may review.
    pub async fn unreviewed_access_requests(
        &self,
        id_token: &str,
    ) -> Result<ca_proto::AccessRequestList, ClientError> {
        let url = format!("{}/v1/requests?needs_review=true", self.base);
        let response = self.http.get(&url).bearer_auth(id_token).send().await;
        decode(&url, response).await
    }

    /// `POST /v1/requests/{id}/{verb}` with `verb` one of `approve`, `deny`,
    /// `done`, `review`.
    pub async fn decide_access_request(
        &self,
        id_token: &str,
        id: u64,
        verb: &str,
        body: &ca_proto::AccessRequestDecision,
    ) -> Result<ca_proto::AccessRequestView, ClientError> {
        let url = format!("{}/v1/requests/{id}/{verb}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(id_token)
            .json(body)
            .send()
            .await;
        decode(&url, response).await
    }

    /// `GET /v1/krl`: the KRL bytes and the armored SSHSIG the CA sent with
    /// them (none when the header is missing).
    pub async fn krl(&self) -> Result<(Vec<u8>, Option<String>), ClientError> {
        let url = format!("{}/v1/krl", self.base);
        let transport = |message: String| ClientError::Transport {
            url: url.clone(),
            message,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(transport(format!("HTTP {status}")));
        }
        let signature = response
            .headers()
            .get(ca_proto::krl::KRL_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v).ok()
            })
            .and_then(|pem| String::from_utf8(pem).ok());
        let bytes = read_capped(response, MAX_KRL_LEN)
            .await
            .map_err(|e| transport(e.to_string()))?;
        Ok((bytes, signature))
    }
}

/// The OIDC nonce to request for `key`.
pub fn nonce_for(key: &PrivateKey) -> Result<String, ClientError> {
    Ok(ca_proto::nonce_for_key(&key.public_key().to_bytes()?))
}

/// The armored SSHSIG proof that `key` was meant to be certified with `id_token`.
pub fn sign_proof(key: &PrivateKey, id_token: &str) -> Result<String, ClientError> {
    let blob = key.public_key().to_bytes()?;
    let signature = key.sign(
        PROOF_NAMESPACE,
        HashAlg::Sha512,
        &proof_message(id_token, &blob),
    )?;
    Ok(signature.to_pem(LineEnding::LF)?)
}

/// How long the client waits before it sends a request the CA answered
/// with 503 once more.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Sends `request`, and once more, the same bytes with the same token, when
/// the CA answers 503 (a timeout, a store that failed for a moment). The CA
/// may have recorded the certificate or access request before its answer
/// timed out; it answers a retry with the token that paid for it with what
/// it recorded, so the retry loses nothing and costs no new sign-in.
async fn send_retrying_once(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let again = request.try_clone();
    let response = request.send().await;
    match (&response, again) {
        (Ok(first), Some(again)) if first.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
            tokio::time::sleep(RETRY_PAUSE).await;
            again.send().await
        }
        _ => response,
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    url: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ClientError> {
    let transport = |message: String| ClientError::Transport {
        url: url.to_string(),
        message,
    };
    let response = response.map_err(|e| {
        let message = error_chain(&e);
        if is_tls_error(&message) {
            ClientError::Tls {
                url: url.to_string(),
                message,
            }
        } else {
            transport(message)
        }
    })?;
    let status = response.status();
    let body = read_capped(response, MAX_RESPONSE_LEN)
        .await
        .map_err(|e| transport(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| transport(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(error) => Err(ClientError::Refused {
            status: status.as_u16(),
            code: error.error.code.as_str().to_owned(),
            message: error.error.message,
        }),
        Err(_) => Err(transport(format!("HTTP {status}"))),
    }
}

/// Whether an error chain's text is a TLS trust failure rather than a
/// connection failure (rustls and webpki name these consistently).
pub fn is_tls_error(chain: &str) -> bool {
    let lower = chain.to_ascii_lowercase();
    [
        "invalid peer certificate",
        "unknownissuer",
        "certificate",
        "badsignature",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Largest JSON answer read from the CA or the identity provider: a
/// misbehaving server must not make the client buffer without end.
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;

/// Largest KRL read from the CA (about 40 bytes per revoked serial or key).
const MAX_KRL_LEN: usize = 64 * 1024 * 1024;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A loopback server answering one request with `length` bytes of JSON
    /// whitespace (chunked, so no length is announced up front).
    async fn endless_answer(length: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < length {
                let frame = format!("{:x}\r\n", chunk.len());
                let written = async {
                    socket.write_all(frame.as_bytes()).await?;
                    socket.write_all(&chunk).await?;
                    socket.write_all(b"\r\n").await
                };
                if written.await.is_err() {
                    return; // the client hung up
                }
                sent += chunk.len();
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        url
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_not_buffered() {
        let url = endless_answer(MAX_RESPONSE_LEN + 128 * 1024).await;
        let client = CaClient::new(&url, None).unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), client.config())
            .await
            .expect("answered in time")
            .expect_err("oversized");
        assert!(error.to_string().contains("response over"), "{error}");
    }
}
