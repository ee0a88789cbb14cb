//! Getting an ID token from the identity provider, through the
//! `openidconnect` crate: discovery, the authorization-code flow with PKCE on
//! a loopback redirect (RFC 8252), the device flow (RFC 8628), refresh, and
//! RFC 7009 revocation of the refresh token.
//!
//! The ID token's `nonce` is always the one derived from the session key
//! (`ca_proto::nonce_for_key`); the CA checks it, so the client does not
//! verify the token itself (it would need the same keys the CA already uses).
//!
//! What the CA publishes for an issuer shapes the exchange: the browser
//! sign-in carries its `auth_params` (`prompt=consent`, without which strict
//! providers grant no refresh token), and its public-client secret goes to
//! the token and revocation endpoints of providers that demand one of
//! installed apps (Google), which document it as not confidential.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use ca_proto::IssuerInfo;
use jit_ssh_common::http::OidcHttp;
use jit_ssh_common::secret::constant_time_eq;
use jit_ssh_common::{error_chain, Secret};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreErrorResponseType, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::ca::MAX_RESPONSE_LEN;
use crate::ui::{open_url, Ui};

/// Discovery fields `CoreProviderMetadata` does not have.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 8628 device authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    /// RFC 7009 token revocation endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

/// Discovery document with the device and revocation endpoints.
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Errors getting a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The identity provider could not be reached or answered garbage.
    #[error("cannot reach the identity provider {issuer}: {message}")]
    Unreachable {
        /// Issuer URL.
        issuer: String,
        /// What went wrong.
        message: String,
    },
    /// The identity provider refused (an OAuth error code).
    #[error("the identity provider refused: {code}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// OAuth error code.
        code: String,
        /// Its description, when given.
        description: Option<String>,
    },
    /// The user cancelled (access_denied) in the browser.
    #[error("sign-in was cancelled in the browser")]
    Cancelled,
    /// No callback came back in time.
    #[error("no answer from the browser within {0:?}")]
    TimedOut(Duration),
    /// The callback's `state` was not the one sent.
    #[error("the browser came back with a state that this login did not send")]
    StateMismatch,
    /// The device code expired before sign-in finished.
    #[error("the device code expired before sign-in finished")]
    DeviceExpired,
    /// The identity provider offers no device flow.
    #[error("the identity provider {0} has no device authorization endpoint")]
    NoDeviceFlow(String),
    /// The refresh token was refused (expired, revoked, used up).
    #[error("the identity provider no longer accepts the refresh token: {0}")]
    RefreshRefused(String),
    /// Local failure (listener, bad URL).
    #[error("{0}")]
    Local(String),
}

/// Tokens from the identity provider.
#[derive(Debug)]
pub struct Tokens {
    /// The ID token (compact JWT).
    pub id_token: Secret,
    /// A refresh token, when `offline_access` was granted.
    pub refresh_token: Option<Secret>,
}

/// One identity provider, as the CA published it, after discovery.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Discovery document.
    pub metadata: Metadata,
    /// OAuth client ID the CA told us to use.
    pub client_id: String,
    /// The public-client secret the CA published for this issuer, if any.
    client_secret: Option<String>,
    /// Extra parameters of the browser sign-in's authorization request.
    auth_params: BTreeMap<String, String>,
    http: reqwest::Client,
}

/// The one line `login` prints when the provider granted no refresh token:
/// silent renewal is off, why, and who can change it.
pub fn renewal_off_note(issuer: &IssuerInfo) -> String {
    let why = match issuer.auth_params.get("prompt") {
        Some(prompt) if prompt.split(' ').any(|p| p == "consent") => format!(
            "it was asked for offline_access with prompt={prompt}: the provider's \
             administrators must allow client {} the refresh_token grant",
            issuer.client_id
        ),
        _ => format!(
            "it was asked for offline_access without prompt=consent, which strict providers \
             require: the CA's operators can set prompt = \"consent\" for issuer {}",
            issuer.name
        ),
    };
    format!(
        "Silent renewal is off: the identity provider {} granted no refresh token ({why}), so \
         `jit-ssh ensure` will need the browser when this certificate expires.",
        issuer.issuer
    )
}

impl Provider {
    /// Runs OpenID discovery for `issuer`.
    pub async fn discover(
        http: &reqwest::Client,
        issuer: &str,
        client_id: &str,
    ) -> Result<Provider, OidcError> {
        let unreachable = |message: String| OidcError::Unreachable {
            issuer: issuer.to_string(),
            message,
        };
        let url = IssuerUrl::new(issuer.to_string()).map_err(|e| unreachable(e.to_string()))?;
        let metadata = Metadata::discover_async(url, &OidcHttp::new(http, MAX_RESPONSE_LEN))
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok(Provider {
            metadata,
            client_id: client_id.to_string(),
            client_secret: None,
            auth_params: BTreeMap::new(),
            http: http.clone(),
        })
    }

    /// What the CA published for signing in with `issuer`: its
    /// authorization parameters and public-client secret.
    pub fn with_sign_in(mut self, issuer: &IssuerInfo) -> Result<Provider, OidcError> {
        if let Some(own) = issuer
            .auth_params
            .keys()
            .find(|k| ca_proto::CLIENT_AUTH_PARAMS.contains(&k.as_str()))
        {
            return Err(OidcError::Local(format!(
                "the CA publishes the sign-in parameter {own:?} for issuer {}, which this \
                 client sets itself",
                issuer.name
            )));
        }
        self.auth_params = issuer.auth_params.clone();
        self.client_secret = issuer.public_client_secret.clone();
        Ok(self)
    }

    /// The public-client secret a stored session's issuer needs at the
    /// token endpoint (renewal, revocation).
    pub fn with_client_secret(mut self, secret: Option<&str>) -> Provider {
        self.client_secret = secret.map(str::to_string);
        self
    }

    /// `scopes`, plus `offline_access` when the provider offers it.
    pub fn scopes(&self, scopes: &[String]) -> Vec<String> {
        let mut scopes = scopes.to_vec();
        let offered = self
            .metadata
            .scopes_supported()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "offline_access"));
        if offered && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        scopes
    }

    fn client(
        &self,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        let client = CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.client_id.clone()),
            self.client_secret.clone().map(ClientSecret::new),
        );
        if self.secret_in_body() {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        }
    }

    /// Whether a client secret goes in the request body
    /// (`client_secret_post`): only where the provider offers that and not
    /// `client_secret_basic`, which is the default of RFC 6749 and OpenID
    /// discovery.
    fn secret_in_body(&self) -> bool {
        self.metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            })
    }

    /// Authorization code + PKCE with a loopback redirect: opens `url` with
    /// `browser`, waits at most `timeout` for the one callback.
    pub async fn browser_login(
        &self,
        scopes: &[String],
        nonce: &str,
        browser: Option<&str>,
        timeout: Duration,
        ui: &Ui,
    ) -> Result<Tokens, OidcError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| OidcError::Local(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OidcError::Local(e.to_string()))?
            .port();
        let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
            .map_err(|e| OidcError::Local(e.to_string()))?;
        let client = self.client().set_redirect_uri(redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce_value = nonce.to_string();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                move || Nonce::new(nonce_value),
            )
            .set_pkce_challenge(challenge);
        for scope in scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &self.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, state, _) = request.url();
        ui.prompt(&format!(
            "Sign in with your browser. If it does not open, visit:\n  {url}"
        ));
        if let Err(e) = open_url(browser, url.as_str()) {
            ui.info(&format!("(could not start a browser: {e})"));
        }
        let callback = {
            let _spinner = ui.spinner("Waiting for the browser to come back…");
            tokio::time::timeout(timeout, wait_for_callback(&listener))
                .await
                .map_err(|_| OidcError::TimedOut(timeout))??
        };
        drop(listener);
        let (code, mut stream) = callback;
        let outcome = check_callback(&code, state.secret(), self.metadata.issuer().as_str());
        let page = match &outcome {
            Ok(_) => (
                "Signed in",
                "jit-ssh has what it needs. You can close this tab.",
            ),
            Err(OidcError::Cancelled) => ("Sign-in cancelled", "You can close this tab."),
            Err(_) => (
                "Sign-in failed",
                "jit-ssh refused this answer; see the terminal. You can close this tab.",
            ),
        };
        respond(&mut stream, 200, page.0, page.1).await;
        let code = outcome?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Local(e.to_string()))?
            .set_pkce_verifier(verifier)
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.idp())
            .await
            .map_err(|e| self.token_error(e))?;
        tokens_from(response)
    }

    /// RFC 8628 device authorization; polls until done or expired.
    pub async fn device_login(
        &self,
        scopes: &[String],
        nonce: &str,
        browser: Option<&str>,
        timeout: Duration,
        ui: &Ui,
    ) -> Result<Tokens, OidcError> {
        let endpoint = self
            .metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| OidcError::NoDeviceFlow(self.metadata.issuer().to_string()))?;
        let client = self.client().set_device_authorization_url(endpoint);
        let http = self.idp();
        // RFC 8628 has no nonce, but OpenID providers (oidc-provider among
        // them) accept the OIDC parameter here and put it in the ID token.
        let mut request = client
            .exchange_device_code()
            .add_extra_param("nonce", nonce.to_string());
        for scope in scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let details: CoreDeviceAuthorizationResponse = request
            .request_async(&http)
            .await
            .map_err(|e| self.token_error(e))?;
        let complete = details
            .verification_uri_complete()
            .map(|u| u.secret().to_string());
        ui.prompt(&format!(
            "To sign in, visit {} and enter the code {}",
            details.verification_uri().as_str(),
            details.user_code().secret()
        ));
        if let Some(complete) = &complete {
            ui.prompt(&format!("or open {complete}"));
            ui.qr(complete);
        }
        if browser.is_some() {
            let target = complete
                .clone()
                .unwrap_or_else(|| details.verification_uri().to_string());
            if let Err(e) = open_url(browser, &target) {
                ui.info(&format!("(could not start a browser: {e})"));
            }
        }
        let _spinner = ui.spinner("Waiting for sign-in to finish…");
        let response = client
            .exchange_device_access_token(&details)
            .map_err(|e| OidcError::Local(e.to_string()))?
            .request_async(&http, tokio::time::sleep, Some(timeout))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => match r.error() {
                    DeviceCodeErrorResponseType::ExpiredToken => OidcError::DeviceExpired,
                    DeviceCodeErrorResponseType::AccessDenied => OidcError::Cancelled,
                    other => OidcError::Refused {
                        code: other.to_string(),
                        description: r.error_description().cloned(),
                    },
                },
                other => self.unreachable(error_chain(&other)),
            })?;
        tokens_from(response)
    }

    /// A fresh ID token from a refresh token (which may rotate).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens, OidcError> {
        let client = self.client();
        let token = RefreshToken::new(refresh_token.expose_secret().to_string());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Local(e.to_string()))?
            .request_async(&self.idp())
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    OidcError::RefreshRefused(match r.error_description() {
                        Some(d) => format!("{} ({d})", r.error()),
                        None => r.error().to_string(),
                    })
                }
                other => self.unreachable(error_chain(&other)),
            })?;
        let mut tokens = tokens_from(response)?;
        if tokens.refresh_token.is_none() {
            // Not rotated: the old one stays valid.
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// RFC 7009: revokes `refresh_token`. `Ok(false)` when the provider has no
    /// revocation endpoint. Plain http is accepted only on loopback (test and
    /// development providers); the crate's own revocation call insists on
    /// https, hence this small request of our own.
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<bool, OidcError> {
        let Some(endpoint) = &self.metadata.additional_metadata().revocation_endpoint else {
            return Ok(false);
        };
        let url = reqwest::Url::parse(endpoint).map_err(|e| OidcError::Local(e.to_string()))?;
        if !crate::ca::may_carry_tokens(&url) {
            return Err(OidcError::Local(format!(
                "refusing to send the refresh token to a non-https revocation endpoint {url}"
            )));
        }
        let mut form = vec![
            ("token", refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ];
        let mut request = self.http.post(url);
        match &self.client_secret {
            Some(secret) if self.secret_in_body() => {
                form.extend([
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", secret),
                ]);
            }
            // RFC 6749 §2.3.1: both form-encoded inside the Basic credentials.
            Some(secret) => {
                let encode = |s: &str| {
                    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes())
                        .collect::<String>()
                };
                request = request.basic_auth(encode(&self.client_id), Some(encode(secret)));
            }
            None => form.push(("client_id", self.client_id.as_str())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        if response.status().is_success() {
            Ok(true)
        } else {
            Err(OidcError::Refused {
                code: format!("revocation HTTP {}", response.status()),
                description: None,
            })
        }
    }

    /// What `openidconnect` sends its requests through: the shared client,
    /// capped like every answer the client reads.
    fn idp(&self) -> OidcHttp<'_> {
        OidcHttp::new(&self.http, MAX_RESPONSE_LEN)
    }

    fn unreachable(&self, message: String) -> OidcError {
        OidcError::Unreachable {
            issuer: self.metadata.issuer().to_string(),
            message,
        }
    }

    fn token_error<RE: std::error::Error + 'static>(
        &self,
        error: RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
    ) -> OidcError {
        match error {
            RequestTokenError::ServerResponse(r) => match r.error() {
                CoreErrorResponseType::Extension(code) if code == "access_denied" => {
                    OidcError::Cancelled
                }
                other => OidcError::Refused {
                    code: other.to_string(),
                    description: r.error_description().cloned(),
                },
            },
            other => self.unreachable(error_chain(&other)),
        }
    }
}

fn tokens_from(response: openidconnect::core::CoreTokenResponse) -> Result<Tokens, OidcError> {
    let id_token = response.id_token().ok_or_else(|| OidcError::Refused {
        code: "no_id_token".into(),
        description: Some("the token response has no ID token (is `openid` in scope?)".into()),
    })?;
    Ok(Tokens {
        id_token: Secret::new(id_token.to_string()),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().to_string())),
    })
}

/// Accepts connections until one is `GET /callback?...`; returns its query
/// and the stream to answer on. Other requests (favicon) get a 404.
async fn wait_for_callback(
    listener: &tokio::net::TcpListener,
) -> Result<(String, tokio::net::TcpStream), OidcError> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| OidcError::Local(format!("loopback listener: {e}")))?;
        let head = match tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await
        {
            Ok(Some(head)) => head,
            _ => continue,
        };
        let target = head
            .lines()
            .next()
            .and_then(|line| {
                let mut parts = line.split(' ');
                (parts.next() == Some("GET"))
                    .then(|| parts.next())
                    .flatten()
            })
            .unwrap_or("")
            .to_string();
        match target.split_once('?') {
            Some(("/callback", query)) => return Ok((query.to_string(), stream)),
            _ => respond(&mut stream, 404, "Not found", "").await,
        }
    }
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > 16 * 1024 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buffer).ok()
}

async fn respond(stream: &mut tokio::net::TcpStream, status: u16, title: &str, text: &str) {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Checks a callback query: the state first (anything with a foreign state
/// is not ours to interpret), then an error, then RFC 9207 `iss`.
pub fn check_callback(query: &str, state: &str, issuer: &str) -> Result<String, OidcError> {
    let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let state_ok = param("state").is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes()));
    if !state_ok {
        return Err(OidcError::StateMismatch);
    }
    if let Some(error) = param("error") {
        if error == "access_denied" {
            return Err(OidcError::Cancelled);
        }
        return Err(OidcError::Refused {
            code: error.to_string(),
            description: param("error_description").map(str::to_string),
        });
    }
    if let Some(iss) = param("iss") {
        if iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(OidcError::Refused {
                code: "issuer_mismatch".into(),
                description: Some(format!("callback from {iss}, expected {issuer}")),
            });
        }
    }
    param("code")
        .map(str::to_string)
        .ok_or_else(|| OidcError::Refused {
            code: "no_code".into(),
            description: Some("the callback carries no authorization code".into()),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ISS: &str = "http://127.0.0.1:1";

    #[test]
    fn callback_with_the_right_state_yields_the_code() {
        assert_eq!(
            check_callback(
                "code=abc&state=s1&iss=http%3A%2F%2F127.0.0.1%3A1",
                "s1",
                ISS
            )
            .unwrap(),
            "abc"
        );
    }

    #[test]
    fn callback_with_a_foreign_state_is_refused_even_with_a_code() {
        assert!(matches!(
            check_callback("code=abc&state=other", "s1", ISS),
            Err(OidcError::StateMismatch)
        ));
        assert!(matches!(
            check_callback("code=abc", "s1", ISS),
            Err(OidcError::StateMismatch)
        ));
    }

    #[test]
    fn access_denied_is_a_cancellation() {
        assert!(matches!(
            check_callback("error=access_denied&state=s1", "s1", ISS),
            Err(OidcError::Cancelled)
        ));
        assert!(matches!(
            check_callback("error=server_error&state=s1", "s1", ISS),
            Err(OidcError::Refused { .. })
        ));
    }

    #[test]
    fn callback_from_another_issuer_is_refused() {
        assert!(matches!(
            check_callback("code=abc&state=s1&iss=http%3A%2F%2Fevil", "s1", ISS),
            Err(OidcError::Refused { .. })
        ));
    }
}
