//! What one connection may hold, decided before and while it is served: a
//! place under the connection caps (in all, and per client address) or an
//! immediate close, and an idle deadline that ends a connection on which
//! nothing happens.
//!
//! Every open connection costs a file descriptor and buffers, so a client
//! that opens connections and sends nothing (or drips bytes) must run into a
//! cap of its own before the CA runs out of descriptors for everyone. A cap
//! that bites is counted in the metrics and logged, at most one line per
//! [`LOG_EVERY`], so that a flood of refused connections cannot flood the
//! log as well.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;

/// Shortest time between two log lines about refused connections (or
/// failed accepts); the lines in between are counted in the next one.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connections open on one listener, under its caps.
pub(super) struct Caps {
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
    log: QuietLog,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_address` are open from the client's address.
    PerAddress,
}

impl Refusal {
    /// The metric label.
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }
}

impl Caps {
    /// Caps for one listener.
    pub(super) fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Caps> {
        Arc::new(Caps {
            limits,
            metrics,
            open: Mutex::new(Open::default()),
            log: QuietLog::default(),
        })
    }

    /// A place for a connection from `addr`, held until the place drops; or
    /// the cap that refuses it, counted and (now and then) logged.
    pub(super) fn admit(self: &Arc<Caps>, addr: IpAddr) -> Result<Place, Refusal> {
        let key = address_key(addr);
        let admitted = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let from_address = open.by_address.get(&key).copied().unwrap_or(0);
            if open.total >= self.limits.max_connections {
                Err(Refusal::Total)
            } else if from_address >= self.limits.max_connections_per_address {
                Err(Refusal::PerAddress)
            } else {
                open.total += 1;
                *open.by_address.entry(key).or_insert(0) += 1;
                Ok(())
            }
        };
        match admitted {
            Ok(()) => {
                self.metrics.connections_open.inc();
                Ok(Place {
                    caps: self.clone(),
                    key,
                })
            }
            Err(refusal) => {
                self.metrics
                    .connections_refused
                    .with_label_values(&[refusal.as_str()])
                    .inc();
                self.log.now_and_then(|suppressed| {
                    let (cap, limit) = match refusal {
                        Refusal::Total => ("max_connections", self.limits.max_connections),
                        Refusal::PerAddress => (
                            "max_connections_per_address",
                            self.limits.max_connections_per_address,
                        ),
                    };
                    tracing::warn!(
                        client = %key,
                        refused_since_last_line = suppressed,
                        "connection refused: {cap} ({limit}) reached"
                    );
                });
                Err(refusal)
            }
        }
    }

    /// Logs a failed `accept` now and then (running out of file descriptors
    /// repeats at every attempt).
    pub(super) fn accept_failed(&self, error: &std::io::Error) {
        self.log.now_and_then(|suppressed| {
            tracing::error!(%error, failed_since_last_line = suppressed, "cannot accept a connection");
        });
    }
}

/// One connection's place under the caps, given back when it drops.
pub(super) struct Place {
    caps: Arc<Caps>,
    key: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.key);
            }
        }
        drop(open);
        self.caps.metrics.connections_open.dec();
    }
}

/// The address a connection counts against: IPv4 addresses (mapped ones
/// included) as they are; IPv6 addresses by their /64, since one client
/// is usually given a whole /64 and could otherwise open connections from
/// as many addresses as it likes.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// A log line at most once per [`LOG_EVERY`], saying how many were held back.
#[derive(Default)]
struct QuietLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl QuietLog {
    fn now_and_then(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            *held_back += 1;
            return;
        }
        *last = Some(Instant::now());
        let suppressed = std::mem::take(held_back);
        drop(state);
        log(suppressed);
    }
}

/// What happens on one connection, for its idle deadline: when a byte last
/// moved, and how many of its requests are being answered.
pub(super) struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last byte read or written.
    last_ms: AtomicU64,
    in_service: AtomicUsize,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_service: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as being answered until the guard drops: a request
    /// the CA is working on is not idleness, however long it is quiet.
    pub(super) fn serving(self: &Arc<Activity>) -> Serving {
        self.in_service.fetch_add(1, Ordering::Relaxed);
        Serving(self.clone())
    }

    /// Completes once the connection has had no request in service and no
    /// byte moving for `idle`.
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline && self.in_service.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wake = deadline.max(Instant::now() + Duration::from_millis(100));
            tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
            if self.in_service.load(Ordering::Relaxed) > 0 {
                // Idleness counts from the end of the last request.
                self.touch();
            }
        }
    }
}

/// A request in service on a connection (see [`Activity::serving`]).
pub(super) struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_service.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's byte stream, noting in its [`Activity`] each time bytes
/// move.
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: usize, per_address: usize) -> Arc<Caps> {
        Caps::new(
            ConnectionLimits {
                max_connections: total,
                max_connections_per_address: per_address,
                ..ConnectionLimits::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn each_cap_refuses_past_its_limit_and_a_closed_connection_frees_its_place() {
        let caps = caps(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        let b: IpAddr = "192.0.2.2".parse().expect("address");
        let first = caps.admit(a).expect("first");
        let _second = caps.admit(a).expect("second");
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerAddress));
        let _third = caps.admit(b).expect("another address");
        assert_eq!(caps.admit(b).err(), Some(Refusal::Total));
        drop(first);
        assert!(caps.admit(a).is_ok());
    }

    #[test]
    fn a_flood_of_refusals_is_one_log_line() {
        let log = QuietLog::default();
        let mut lines = Vec::new();
        for _ in 0..1000 {
            log.now_and_then(|held_back| lines.push(held_back));
        }
        assert_eq!(lines, [0]);
        assert_eq!(log.state.lock().expect("lock").1, 999);
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        assert_eq!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert_eq!(
            address_key(mapped),
            "192.0.2.1".parse::<IpAddr>().expect("v4")
        );
    }
}
