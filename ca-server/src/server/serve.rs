//! Serving HTTP on a listening socket: accepting under the connection caps,
//! the TLS handshake, hyper's connection with its deadlines and HTTP/2
//! limits, and a graceful stop.
//!
//! hyper is driven directly (hyper-util's `auto` builder) so that every
//! deadline is set with a timer: a connection that sends half its headers,
//! stays silent, or opens HTTP/2 streams it never finishes is closed on
//! time, and the number of connections is capped before any byte is read.
//! Plain HTTP serves HTTP/1.1 only (the CA listens in plain HTTP only on
//! loopback, and HTTP/2 without TLS, "prior knowledge", has no client that
//! needs it); HTTP/2 is offered over TLS, with a handful of concurrent
//! streams and small flow-control windows, since no API call needs more.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::connections::{Activity, Caps, Watched};
use super::ServerError;
use crate::config::{ConnectionLimits, TlsFiles};
use crate::http::{AppState, MAX_HEADERS, MAX_HEADER_BYTES};
use crate::metrics::Metrics;

/// Longest time requests in flight get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent HTTP/2 streams per connection: a client makes one call at a
/// time, and a few spare let it overlap a retry.
const MAX_CONCURRENT_STREAMS: u32 = 8;
/// HTTP/2 flow-control window of one stream: bodies are small, and the
/// window is what a client may send before the CA reads it.
const STREAM_WINDOW: u32 = 16 * 1024;
/// HTTP/2 flow-control window of one connection, across its streams.
const CONNECTION_WINDOW: u32 = 64 * 1024;
/// hyper's read buffer of one HTTP/1.1 connection: twice the headers the
/// CA reads, so that headers a little over [`MAX_HEADER_BYTES`] still
/// reach the service and get a JSON answer; past it hyper itself answers
/// (see docs/api.md, "Errors").
const READ_BUFFER: usize = 2 * MAX_HEADER_BYTES;
/// Header fields hyper parses before it answers 431 itself: above the
/// CA's own limit ([`MAX_HEADERS`]), for the same reason.
const HYPER_MAX_HEADERS: usize = 2 * MAX_HEADERS;

/// The monitoring listener, serving until [`Monitoring::stop`].
pub struct Monitoring {
    stop: watch::Sender<bool>,
    /// Where it listens (the port chosen when it was given as 0).
    pub local: SocketAddr,
}

impl Monitoring {
    /// Stops serving; a scrape in flight is cut, which Prometheus retries.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Serves `router` (see [`crate::http::monitoring_app`]) on `listener`
/// from a task of the current runtime, in plain HTTP: what it serves
/// carries no credential, and it listens where the operator chose to let
/// scrapers in. Its connections have the default deadlines and caps. Logs
/// `metrics listener on http://ADDRESS` before it returns, so the line
/// precedes the API's `listening on`.
pub fn spawn_monitoring(
    listener: std::net::TcpListener,
    router: Router,
) -> Result<Monitoring, ServerError> {
    let local = local_address(&listener)?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Listen {
            addr: local,
            source,
        })?;
    let (stop, stopped) = watch::channel(false);
    let limits = ConnectionLimits::default();
    // Its own metrics: refusals here are not the API's.
    let caps = Caps::new(limits, Arc::new(Metrics::new()));
    let served = Served {
        router,
        tls: None,
        limits,
        caps,
    };
    tokio::spawn(async move {
        served.accept_until(listener, stopped, Duration::ZERO).await;
    });
    tracing::info!("metrics listener on http://{local} (/metrics, /healthz, /readyz)");
    Ok(Monitoring { stop, local })
}

/// Binds a listening socket ready for [`serve_router`].
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen_err = |source| ServerError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    Ok(listener)
}

/// Serves `router` on `listener` (HTTPS when `tls` is given) with the
/// connection limits, metrics and readiness of `state`, until `shutdown`
/// completes. Then `ready` turns false (so `/readyz` fails), new
/// connections are refused, and requests in flight, with their database
/// commits, get up to [`DRAIN_TIMEOUT`] to finish.
///
/// Each core has a serving thread with a single-threaded runtime, and all of
/// them accept from `listener`: a connection, with its buffers and TLS
/// state, stays on the thread that accepted it. Under tokio's work-stealing
/// scheduler connections moved between cores, their data with them, which
/// every request paid for, most where the cores share no cache
/// (docs/benchmarks.md).
/// Ed25519 batches still spread over the cores (`crate::ed25519_batch`).
pub async fn serve_router(
    listener: std::net::TcpListener,
    tls: Option<&TlsFiles>,
    router: Router,
    state: &AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = local_address(&listener)?;
    let listen_err = |source| ServerError::Listen {
        addr: local,
        source,
    };
    let tls = tls.map(tls_acceptor).transpose()?;
    let served = Served {
        router,
        tls,
        limits: state.connections,
        caps: Caps::new(state.connections, state.metrics.clone()),
    };
    // One stop signal for all threads: a shutdown reaches every one, and so
    // does dropping this future (a caller that gave up on serving).
    let (stop, stopped) = watch::channel(false);
    let stop = StopOnDrop(stop);
    let (done, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for index in 0..threads {
        let listener = listener.try_clone().map_err(listen_err)?;
        let (served, stopped, stop, done) = (
            served.clone(),
            stopped.clone(),
            stop.0.clone(),
            done.clone(),
        );
        std::thread::Builder::new()
            .name(format!("jit-ssh-ca-http-{index}"))
            .spawn(move || {
                let ended = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            let listener = tokio::net::TcpListener::from_std(listener)?;
                            served.accept_until(listener, stopped, DRAIN_TIMEOUT).await;
                            Ok(())
                        })
                    });
                // A thread that stopped serving (an error) stops the others.
                stop.send_replace(true);
                let _ = done.send(ended);
            })
            .map_err(listen_err)?;
    }
    drop(done);
    let scheme = if served.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {scheme}://{local}");
    let mut outcome = Ok(());
    let mut reported = 0;
    tokio::select! {
        () = shutdown => {
            state.ready.store(false, Ordering::SeqCst);
            tracing::info!("shutting down: finishing requests in flight");
        }
        first = ended.recv() => {
            reported += 1;
            outcome = first.unwrap_or_else(|| Err(std::io::Error::other("a serving thread panicked")));
        }
    }
    stop.0.send_replace(true);
    while reported < threads {
        let next = ended
            .recv()
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("a serving thread panicked")));
        outcome = outcome.and(next);
        reported += 1;
    }
    outcome.map_err(listen_err)
}

/// Tells the serving threads to stop when dropped.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// What every connection of one listener is served with.
#[derive(Clone)]
struct Served {
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    caps: Arc<Caps>,
}

impl Served {
    /// Accepts and serves connections until `stopped` turns true, then
    /// gives the open ones up to `drain` to finish their requests.
    async fn accept_until(
        self,
        listener: tokio::net::TcpListener,
        mut stopped: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(self.builder());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: the connections
                    // that hold them end on their deadlines, so wait a
                    // little rather than spin, and never stop serving.
                    self.caps.accept_failed(&error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(place) = self.caps.admit(peer.ip()) else {
                // Closed at once, before any byte is read or written.
                continue;
            };
            let _ = stream.set_nodelay(true);
            let served = self.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let activity = Activity::new();
                let stream = Watched::new(stream, activity.clone());
                let handshake = served.limits.header_read_timeout;
                match &served.tls {
                    None => {
                        served
                            .connection(&builder, stream, peer, activity, watcher)
                            .await
                    }
                    Some(tls) => {
                        // A failed or too slow handshake is the client's
                        // affair; its connection just closes.
                        let handshake = tokio::time::timeout(handshake, tls.accept(stream)).await;
                        if let Ok(Ok(stream)) = handshake {
                            served
                                .connection(&builder, stream, peer, activity, watcher)
                                .await;
                        }
                    }
                }
                drop(place);
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    }

    /// hyper's connection settings: the deadlines and the HTTP/2 limits.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if self.tls.is_none() {
            builder = builder.http1_only();
        }
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(READ_BUFFER)
            .max_headers(HYPER_MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .adaptive_window(false)
            .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
            .max_send_buf_size(CONNECTION_WINDOW as usize)
            .max_pending_accept_reset_streams(MAX_CONCURRENT_STREAMS as usize);
        builder
    }

    /// Serves one connection until it ends, its idle deadline passes, or
    /// a stop is signalled (then it finishes the requests it has).
    async fn connection<S>(
        &self,
        builder: &auto::Builder<TokioExecutor>,
        stream: S,
        peer: SocketAddr,
        activity: Arc<Activity>,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let in_service = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let serving = in_service.serving();
            let answer = router.clone().oneshot(request);
            async move {
                let answered = answer.await;
                drop(serving);
                answered
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = watcher.watch(connection);
        tokio::select! {
            // Errors are the client's (a reset, a malformed request hyper
            // has answered), not the CA's.
            _ = connection => {}
            () = activity.idle_for(self.limits.idle_timeout) => {}
        }
    }
}

fn local_address(listener: &std::net::TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Listen {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// The TLS side of the API's listener, from the `[tls]` PEM files: HTTP/2
/// and HTTP/1.1 offered by ALPN.
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let failed = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ServerError::Tls(format!("{}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| failed(&files.cert, &e))?;
    if chain.is_empty() {
        return Err(failed(&files.cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| failed(&files.key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&files.cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| failed(&files.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
