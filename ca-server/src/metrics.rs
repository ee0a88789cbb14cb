//! Prometheus metrics of the CA, served at `GET /metrics` on the monitoring
//! listener (`metrics_listen`), never on the API's.
//!
//! One [`Metrics`] value per server, created at start-up and handed to the
//! parts that count (no global registry): the HTTP layer counts requests and
//! outcomes and connections, the store times its commits and says whether
//! it accepts writes, the verifier counts JWKS fetches.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// The CA's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Certificates issued.
    pub issued: IntCounter,
    /// Requests refused, by error code.
    pub denied: IntCounterVec,
    /// Request latency by route and status class.
    pub request_seconds: HistogramVec,
    /// Time to commit one batch of records, with its fsync.
    pub commit_seconds: Histogram,
    /// Records per committed batch.
    pub commit_batch_size: Histogram,
    /// JWKS fetches by issuer and result (`ok`, `error`).
    pub jwks_fetches: IntCounterVec,
    /// Policy reloads by result (`ok`, `error`).
    pub policy_reloads: IntCounterVec,
    /// Webhook delivery attempts by result (`ok`, `retry`, `failed`,
    /// `dropped`).
    pub webhook_deliveries: IntCounterVec,
    /// Build information (always 1).
    pub build_info: IntGauge,
    /// API connections open now.
    pub connections_open: IntGauge,
    /// API connections closed as soon as they were accepted, by the cap
    /// that refused them (`max_connections`, `max_connections_per_address`).
    pub connections_refused: IntCounterVec,
    /// 1 while the database accepts writes, 0 once a write has failed and
    /// until one succeeds again; `/readyz` answers from it.
    pub store_writable: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("jit_ssh_ca".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let issued = IntCounter::new("certificates_issued_total", "User certificates issued")
            .expect("static metric definition");
        let denied = IntCounterVec::new(
            Opts::new(
                "requests_refused_total",
                "Certificate requests refused, by error code",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "HTTP request latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "status"],
        )
        .expect("static metric definition");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "db_commit_duration_seconds",
                "Database batch commit latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("static metric definition");
        let commit_batch_size = Histogram::with_opts(
            HistogramOpts::new("db_commit_batch_size", "Records committed per transaction")
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
        )
        .expect("static metric definition");
        let jwks_fetches = IntCounterVec::new(
            Opts::new("jwks_fetches_total", "JWKS fetches by issuer and result"),
            &["issuer", "result"],
        )
        .expect("static metric definition");
        let policy_reloads = IntCounterVec::new(
            Opts::new("policy_reloads_total", "Policy reloads by result"),
            &["result"],
        )
        .expect("static metric definition");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook deliveries by result (ok, retry, failed, dropped)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let build_info = IntGauge::with_opts(
            Opts::new("build_info", "Build information")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("static metric definition");
        build_info.set(1);
        let connections_open = IntGauge::new("connections_open", "API connections open")
            .expect("static metric definition");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "API connections closed at once by a connection cap, by cap",
            ),
            &["cap"],
        )
        .expect("static metric definition");
        let store_writable = IntGauge::new(
            "store_writable",
            "1 while the database accepts writes, 0 after a failed write until one succeeds",
        )
        .expect("static metric definition");
        store_writable.set(1);
        for collector in [
            Box::new(issued.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(denied.clone()),
            Box::new(request_seconds.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(commit_batch_size.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(build_info.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(store_writable.clone()),
        ] {
            // Names are distinct and static: registration cannot collide.
            let _ = registry.register(collector);
        }
        Metrics {
            registry,
            issued,
            denied,
            request_seconds,
            commit_seconds,
            commit_batch_size,
            jwks_fetches,
            policy_reloads,
            webhook_deliveries,
            build_info,
            connections_open,
            connections_refused,
            store_writable,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.issued.inc();
        metrics.denied.with_label_values(&["invalid_token"]).inc();
        let text = metrics.render();
        assert!(
            text.contains("jit_ssh_ca_certificates_issued_total 1"),
            "{text}"
        );
        assert!(
            text.contains("jit_ssh_ca_requests_refused_total{code=\"invalid_token\"} 1"),
            "{text}"
        );
        assert!(text.contains("jit_ssh_ca_build_info{version="), "{text}");
    }
}
