//! Webhook notifications of access-request changes.
//!
//! Each configured `[[webhook]]` receives a JSON event when a request is
//! created, approved, denied or ended, and a loud `break_glass` event when a
//! requester approves their own request. The body carries a `text` field, so a
//! Slack (or compatible) incoming-webhook URL can take it as it is, and is
//! signed with HMAC-SHA256 under the webhook's secret: the header
//! `x-jit-ssh-signature: sha256=<hex>` is the HMAC of the bytes
//! `<x-jit-ssh-timestamp>.<body>` (see docs/api.md).
//!
//! Delivery never touches the request path: [`Notifier::notify`] only tries
//! to put the event on a bounded queue (a full queue drops the event with a
//! warning and a metric); a background task posts it, retrying with
//! exponential backoff a bounded number of times.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use jit_ssh_common::Secret;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use crate::access::AccessRequest;
use crate::metrics::Metrics;
use crate::UnixTime;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-jit-ssh-signature";
/// The timestamp header (Unix seconds), part of the signed bytes.
pub const TIMESTAMP_HEADER: &str = "x-jit-ssh-timestamp";
/// Attempts per delivery before it is given up.
pub const MAX_ATTEMPTS: u32 = 5;
/// Events waiting for delivery at most; more are dropped.
pub const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in progress at once (each with its retries).
const MAX_CONCURRENT: usize = 32;
/// First retry delay; doubled each time up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A webhook secret; never printed, wiped on drop.
#[derive(Clone)]
pub struct WebhookSecret(Secret);

impl WebhookSecret {
    /// Wraps a secret; trailing newlines (as left in a file) are not part of it.
    pub fn new(text: String) -> Self {
        WebhookSecret(Secret::new_trimmed(text))
    }

    /// Whether there is nothing to sign with.
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The part of a webhook URL that may be logged: scheme, host and port.
/// Incoming-webhook URLs (Slack, Teams, Discord) carry their credential in
/// the path, so the path never reaches a log line or an error message.
pub fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}/[path redacted]",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "[unparsable URL]".into(),
    }
}

/// One configured webhook.
#[derive(Clone)]
pub struct WebhookTarget {
    /// Where events are posted.
    pub url: String,
    /// The HMAC key.
    pub secret: WebhookSecret,
}

/// Escapes `&`, `<` and `>` the way Slack's message formatting expects.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &loggable_url(&self.url))
            .field("secret", &self.secret)
            .finish()
    }
}

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A request was made.
    Created,
    /// It got its last required approval; the window is open.
    Approved,
    /// An approver denied it.
    Denied,
    /// Its requester or an administrator ended it.
    Ended,
    /// Its requester approved it themselves under a rule with
    /// `break_glass`: the window is open and it awaits review.
    #[serde(rename = "break_glass")]
    BreakGlass,
}

/// The JSON body posted to each webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// A one-line summary, for Slack-compatible receivers.
    pub text: String,
    /// What happened.
    pub kind: EventKind,
    /// The access request.
    pub request_id: u64,
    /// `user@issuer` of the requester.
    pub requester: String,
    /// The principals asked for.
    pub principals: Vec<String>,
    /// Who made the change (`user@issuer`).
    pub actor: String,
    /// The requester's reason.
    pub reason: String,
    /// The approver's comment, or why it was denied or ended.
    pub comment: String,
    /// End of the window (Unix seconds), once approved.
    pub window_end: Option<UnixTime>,
    /// When it happened (Unix seconds).
    pub at: UnixTime,
}

impl Event {
    /// The event for `request` after a change by `actor`.
    pub fn new(
        kind: EventKind,
        request: &AccessRequest,
        actor: &str,
        comment: &str,
        at: UnixTime,
    ) -> Event {
        // Everything put into the Slack text is escaped as Slack asks, so that
        // a reason, or a workload name taken from a claim, cannot mention
        // @channel or dress up a link in the approvers' channel; the
        // structured fields carry it raw.
        let principals = slack_escape(&request.principals.join(", "));
        let requester = slack_escape(&request.requester);
        let actor = slack_escape(actor);
        let reason_text = slack_escape(&request.reason);
        let comment_text = slack_escape(comment);
        let id = request.id;
        let text = match kind {
            EventKind::Created => {
                format!("jit-ssh: {requester} requests {principals} (request {id}): {reason_text}")
            }
            EventKind::Approved => {
                format!("jit-ssh: {actor} approved {principals} for {requester} (request {id})")
            }
            EventKind::Denied => format!(
                "jit-ssh: {actor} denied {principals} for {requester} (request {id}): {comment_text}"
            ),
            EventKind::BreakGlass => format!(
                "\u{1f6a8} BREAK-GLASS: {requester} approved {principals} for themselves (request {id}): {reason_text} \u{2014} review it with `jit-ssh review {id}`"
            ),
            EventKind::Ended => format!(
                "jit-ssh: {actor} ended {principals} for {requester} (request {id}): {comment_text}"
            ),
        };
        Event {
            text,
            kind,
            request_id: request.id,
            requester: request.requester.clone(),
            principals: request.principals.clone(),
            actor: actor.to_string(),
            reason: request.reason.clone(),
            comment: comment.to_string(),
            window_end: request.window_end,
            at,
        }
    }

    /// The exact body bytes.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `sha256=<hex>` of HMAC-SHA256 under `secret` over `<timestamp>.<body>`.
pub fn signature(secret: &WebhookSecret, timestamp: UnixTime, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.0.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How long to wait after failed attempt `attempt` (1-based) before the next.
pub fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(factor)
        .min(MAX_RETRY_DELAY)
}

/// Hands events to the background deliverer; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Arc<Event>>>,
    metrics: Metrics,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            queue: None,
            metrics: Metrics::new(),
        }
    }

    /// Starts the background deliverer for `targets` (must run inside the
    /// runtime); with no targets, nothing is started.
    pub fn start(targets: Vec<WebhookTarget>, metrics: Metrics) -> Notifier {
        if targets.is_empty() {
            return Notifier {
                queue: None,
                metrics,
            };
        }
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
                return Notifier {
                    queue: None,
                    metrics,
                };
            }
        };
        let (tx, mut rx) = mpsc::channel::<Arc<Event>>(QUEUE_CAPACITY);
        let targets: Arc<Vec<WebhookTarget>> = Arc::new(targets);
        let worker_metrics = metrics.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
            while let Some(event) = rx.recv().await {
                for index in 0..targets.len() {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let client = client.clone();
                    let targets = targets.clone();
                    let event = event.clone();
                    let metrics = worker_metrics.clone();
                    tokio::spawn(async move {
                        deliver(&client, &targets[index], &event, &metrics).await;
                        drop(permit);
                    });
                }
            }
        });
        Notifier {
            queue: Some(tx),
            metrics,
        }
    }

    /// Queues `event` for every webhook without waiting; a full queue drops it.
    pub fn notify(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(Arc::new(event)) {
            let (kind, id) = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => {
                    (ev.kind, ev.request_id)
                }
            };
            tracing::warn!(?kind, request = id, "webhook queue full: event dropped");
            self.metrics
                .webhook_deliveries
                .with_label_values(&["dropped"])
                .inc();
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    event: &Event,
    metrics: &Metrics,
) {
    let body = event.body();
    for attempt in 1..=MAX_ATTEMPTS {
        let timestamp = crate::unix_now();
        let result = client
            .post(&target.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(&target.secret, timestamp, &body),
            )
            .body(body.clone())
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => {
                metrics.webhook_deliveries.with_label_values(&["ok"]).inc();
                return;
            }
            Ok(response) => format!("status {}", response.status().as_u16()),
            Err(e) => e.without_url().to_string(),
        };
        if attempt == MAX_ATTEMPTS {
            tracing::warn!(url = %loggable_url(&target.url), request = event.request_id, kind = ?event.kind, error = %failure, attempts = attempt, "webhook delivery given up");
            metrics
                .webhook_deliveries
                .with_label_values(&["failed"])
                .inc();
            return;
        }
        tracing::info!(url = %loggable_url(&target.url), request = event.request_id, error = %failure, attempt, "webhook delivery failed; retrying");
        metrics
            .webhook_deliveries
            .with_label_values(&["retry"])
            .inc();
        tokio::time::sleep(retry_delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::RequestStatus;

    fn request() -> AccessRequest {
        AccessRequest {
            id: 7,
            requester: "bob@corp".into(),
            requester_key: None,
            principals: vec!["root".into()],
            reason: "INC-1234: disk full".into(),
            window_secs: 1800,
            status: RequestStatus::Approved,
            created_at: 1_000,
            expires_at: 4_600,
            window_start: Some(1_100),
            window_end: Some(2_900),
            approvals: Vec::new(),
            closed_by: None,
            closed_reason: None,
            rules: vec!["root".into()],
            approved_under: None,
            break_glass: false,
            starts_at: None,
            from_first_use: false,
            review: None,
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1700000000.{"text":"hi"}' | openssl dgst -sha256 -hmac Jefe
        let secret = WebhookSecret::new("Jefe\n".into());
        assert_eq!(
            signature(&secret, 1_700_000_000, br#"{"text":"hi"}"#),
            "sha256=78c16fb1347cc108e4fe45972cb2c71d070d22cb5c714af583367a3b7d491ce5"
        );
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }

    #[test]
    fn free_text_cannot_mention_or_disguise_links_in_the_text() {
        let mut sneaky = request();
        sneaky.reason = "<!channel> approve at <https://evil.example|the console> & go".into();
        let event = Event::new(EventKind::Created, &sneaky, "bob@corp", "", 1_000);
        let value: serde_json::Value = serde_json::from_slice(&event.body()).expect("JSON");
        let text = value["text"].as_str().expect("text");
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp; go"),
            "{text}"
        );
        assert_eq!(value["reason"], sneaky.reason, "structured field stays raw");
        let denied = Event::new(EventKind::Denied, &request(), "carol@corp", "<@U1>", 1_100);
        let value: serde_json::Value = serde_json::from_slice(&denied.body()).expect("JSON");
        assert!(value["text"]
            .as_str()
            .expect("text")
            .ends_with("&lt;@U1&gt;"));
        assert_eq!(value["comment"], "<@U1>");
        let mut workload = request();
        workload.requester = "<!here>|org/app@github".into();
        workload.principals = vec!["<!channel>".into()];
        for kind in [
            EventKind::Created,
            EventKind::Approved,
            EventKind::BreakGlass,
        ] {
            let event = Event::new(kind, &workload, "<!everyone>@corp", "", 1_000);
            let value: serde_json::Value = serde_json::from_slice(&event.body()).expect("JSON");
            let text = value["text"].as_str().expect("text");
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert_eq!(value["requester"], workload.requester);
        }
    }

    #[test]
    fn logged_webhook_urls_keep_no_path() {
        assert_eq!(
            loggable_url("https://hooks.slack.com/services/T0/B0/s3cr3t"),
            "https://hooks.slack.com/[path redacted]"
        );
        assert_eq!(
            loggable_url("http://127.0.0.1:8080/hook?token=x"),
            "http://127.0.0.1:8080/[path redacted]"
        );
        assert_eq!(loggable_url("not a url"), "[unparsable URL]");
        let target = WebhookTarget {
            url: "https://hooks.slack.com/services/T0/B0/s3cr3t".into(),
            secret: WebhookSecret::new("k".into()),
        };
        assert!(!format!("{target:?}").contains("s3cr3t"));
    }

    #[test]
    fn payload_has_slack_text_and_fields() {
        let event = Event::new(EventKind::Approved, &request(), "carol@corp", "ok", 1_100);
        let value: serde_json::Value = serde_json::from_slice(&event.body()).expect("JSON");
        assert_eq!(value["kind"], "approved");
        assert_eq!(value["request_id"], 7);
        assert_eq!(value["requester"], "bob@corp");
        assert_eq!(value["principals"][0], "root");
        assert_eq!(value["actor"], "carol@corp");
        assert_eq!(value["comment"], "ok");
        assert_eq!(value["window_end"], 2_900);
        assert_eq!(value["at"], 1_100);
        let text = value["text"].as_str().expect("text");
        assert!(
            text.contains("carol@corp approved root for bob@corp"),
            "{text}"
        );
        let loud = Event::new(EventKind::BreakGlass, &request(), "bob@corp", "", 1_000);
        assert!(
            loud.text
                .starts_with("\u{1f6a8} BREAK-GLASS: bob@corp approved root"),
            "{}",
            loud.text
        );
        let value: serde_json::Value = serde_json::from_slice(&loud.body()).expect("json");
        assert_eq!(value["kind"], "break_glass");
        let created = Event::new(EventKind::Created, &request(), "bob@corp", "", 1_000);
        assert!(created.text.contains("INC-1234"), "{}", created.text);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let delays: Vec<u64> = (1..MAX_ATTEMPTS)
            .map(|a| retry_delay(a).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8]);
        assert_eq!(retry_delay(6), Duration::from_secs(30));
        assert_eq!(retry_delay(100), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn notify_never_blocks_without_a_runtime_receiver() {
        let metrics = Metrics::new();
        let (tx, _rx) = mpsc::channel(1);
        let notifier = Notifier {
            queue: Some(tx),
            metrics: metrics.clone(),
        };
        let event = Event::new(EventKind::Created, &request(), "bob@corp", "", 1_000);
        notifier.notify(event.clone());
        notifier.notify(event);
        assert!(metrics
            .render()
            .contains("jit_ssh_ca_webhook_deliveries_total{result=\"dropped\"} 1"));
        Notifier::disabled().notify(Event::new(EventKind::Ended, &request(), "x", "", 0));
    }
}
