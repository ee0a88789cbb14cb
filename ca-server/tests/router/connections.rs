//! The CA's HTTP server on a real loopback socket (`server::serve_router`),
//! driven by clients that write bytes by hand: slow and silent clients are
//! closed on their deadlines, the connection caps close what is over them,
//! oversized heads are refused before a body is read, HTTP/2 is offered
//! only over TLS and with few streams and small windows, and every refusal
//! the CA writes carries the JSON error body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_server::config::{Config, TlsFiles};
use ca_server::http::app;
use ca_server::server::{bind, serve_router};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use crate::support::{configured_fixture, Fixture};

/// Longest any single wait of these tests may take.
const BOUND: Duration = Duration::from_secs(5);

/// The fixture's CA served on a free loopback port until dropped.
struct Served {
    addr: SocketAddr,
    fixture: Fixture,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(configure: impl FnOnce(&mut Config)) -> Served {
        Served::start_with(configure, None).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config), tls: Option<TlsFiles>) -> Served {
        let fixture = configured_fixture(configure).await;
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let state = fixture.state.clone();
        let task = tokio::spawn(async move {
            let router = app(state.clone());
            serve_router(listener, tls.as_ref(), router, &state, async {
                let _ = stopped.await;
            })
            .await
            .expect("served");
        });
        Served {
            addr,
            fixture,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn connect(&self) -> TcpStream {
        self.connect_from([127, 0, 0, 1]).await
    }

    /// A connection from another loopback address (all of 127/8 is local).
    async fn connect_from(&self, source: [u8; 4]) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((IpAddr::from(source), 0)))
            .expect("bind the source address");
        tokio::time::timeout(BOUND, socket.connect(self.addr))
            .await
            .expect("connected in time")
            .expect("connect")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("stopped in time")
                .expect("serving task");
        }
    }
}

/// Everything the server sends until it closes the connection, and how
/// long that took; panics past [`BOUND`].
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "still open after {BOUND:?}, having received {:?}",
                    String::from_utf8_lossy(&received)
                )
            });
        match read {
            Ok(0) | Err(_) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// One HTTP/1.1 response: (status, body) from the raw bytes.
fn parse(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The `error.code` of a JSON error body.
fn code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not a JSON error body ({e}): {body:?}"));
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Writes `request` and reads the answer up to the close.
async fn exchange(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: &[u8],
) -> (u16, String) {
    stream.write_all(request).await.expect("write");
    let (response, _) = until_closed(stream).await;
    parse(&response)
}

const CLOSE: &str = "Connection: close\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_closed_on_their_deadlines() {
    let served = Served::start(|config| {
        config.connections.header_read_timeout = Duration::from_secs(1);
        config.connections.body_timeout = Duration::from_secs(1);
        config.connections.idle_timeout = Duration::from_secs(2);
    })
    .await;

    // Connected, nothing sent: closed without an answer.
    let mut silent = served.connect().await;
    let (answer, _) = until_closed(&mut silent).await;
    assert!(answer.is_empty(), "{answer:?}");

    // Half the headers, then nothing.
    let mut half = served.connect().await;
    half.write_all(b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\nContent-Ty")
        .await
        .expect("write");
    until_closed(&mut half).await;

    // Headers dripped a byte at a time never finish within the deadline.
    let mut dripping = served.connect().await;
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: ca\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for byte in head {
        if dripping.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(started.elapsed() < BOUND, "still reading dripped headers");
    }
    let (answer, _) = until_closed(&mut dripping).await;
    assert!(
        answer.is_empty(),
        "answered a request it never finished reading"
    );

    // A kept-alive connection after its request: closed once idle.
    let mut kept = served.connect().await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: ca\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut kept).await;
    assert_eq!(parse(&answer).0, 200);

    // A declared body that never comes: 408 with the JSON body, then closed.
    let mut bodiless = served.connect().await;
    let (status, body) = exchange(
        &mut bodiless,
        b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
          Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (408, "body_timeout"));

    // A body dripped a byte at a time: the same.
    let dripped = served.connect().await;
    let (mut reader, mut writer) = tokio::io::split(dripped);
    writer
        .write_all(
            b"POST /v1/requests HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .expect("write");
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (answer, _) = until_closed(&mut reader).await;
    drip.abort();
    let (status, body) = parse(&answer);
    assert_eq!((status, code(&body).as_str()), (408, "body_timeout"));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_any_of_it_arrives() {
    let served = Served::start(|config| {
        config.connections.body_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = served.connect().await;
    stream
        .write_all(
            b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
              Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
        )
        .await
        .expect("write");
    let (answer, took) = until_closed(&mut stream).await;
    let (status, body) = parse(&answer);
    assert_eq!((status, code(&body).as_str()), (413, "body_too_large"));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_rate_limit_answers_before_the_body_is_read() {
    let served = Served::start(|config| {
        config.rate_limit_per_address = 1;
        config.connections.body_timeout = Duration::from_secs(60);
    })
    .await;
    let request = format!(
        "POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\n{CLOSE}Content-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    let mut first = served.connect().await;
    let (status, body) = exchange(&mut first, request.as_bytes()).await;
    assert_eq!((status, code(&body).as_str()), (401, "missing_token"));
    // Over the limit, with a body that never comes: answered at once.
    let mut second = served.connect().await;
    second
        .write_all(
            b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .expect("write");
    let (answer, took) = until_closed(&mut second).await;
    let (status, body) = parse(&answer);
    assert_eq!((status, code(&body).as_str()), (429, "rate_limited"));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_a_cap_are_closed_at_once_and_counted() {
    let served = Served::start(|config| {
        config.connections.header_read_timeout = Duration::from_secs(60);
        config.connections.idle_timeout = Duration::from_secs(60);
        config.connections.max_connections = 5;
        config.connections.max_connections_per_address = 3;
    })
    .await;
    let refused = |cap: &str| {
        let text = served.fixture.state.metrics.render();
        let line = format!("jit_ssh_ca_connections_refused_total{{cap=\"{cap}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map_or(0, |n| n.trim().parse::<u64>().expect("count"))
    };
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: ca\r\n{CLOSE}\r\n");

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(served.connect().await);
    }
    // The server counts a connection once it has accepted it: wait until
    // the three are in before the fourth.
    wait_for_open(&served, 3).await;
    let mut fourth = served.connect().await;
    let (answer, _) = until_closed(&mut fourth).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert_eq!(refused("max_connections_per_address"), 1);

    // Another address is still served.
    let mut other = served.connect_from([127, 0, 0, 2]).await;
    assert_eq!(exchange(&mut other, healthz.as_bytes()).await.0, 200);
    wait_for_open(&served, 3).await;

    // Up to the total cap, then refused from a third address.
    held.push(served.connect_from([127, 0, 0, 2]).await);
    held.push(served.connect_from([127, 0, 0, 2]).await);
    wait_for_open(&served, 5).await;
    let mut third = served.connect_from([127, 0, 0, 3]).await;
    let (answer, _) = until_closed(&mut third).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert_eq!(refused("max_connections"), 1);

    // A closed connection gives its place back.
    drop(held.remove(0));
    wait_for_open(&served, 4).await;
    let mut again = served.connect().await;
    assert_eq!(exchange(&mut again, healthz.as_bytes()).await.0, 200);
    drop(held);
    served.stop().await;
}

/// Waits until the server counts `n` connections open.
async fn wait_for_open(served: &Served, n: i64) {
    let started = Instant::now();
    while served.fixture.state.metrics.connections_open.get() != n {
        assert!(
            started.elapsed() < BOUND,
            "{} connections open, not {n}",
            served.fixture.state.metrics.connections_open.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_the_ca_writes_has_the_json_error_body() {
    let served = Served::start(|_| {}).await;
    for (request, status, expected) in [
        (
            format!("PUT /v1/certs/user HTTP/1.1\r\nHost: ca\r\n{CLOSE}Content-Length: 0\r\n\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            format!("GET /v1/certs/user HTTP/1.1\r\nHost: ca\r\n{CLOSE}\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            format!("POST /v1/krl HTTP/1.1\r\nHost: ca\r\n{CLOSE}Content-Length: 0\r\n\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: ca\r\n{CLOSE}{}\r\n",
                (0..150)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
            431,
            "headers_too_large",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: ca\r\n{CLOSE}X-Big: {}\r\n\r\n",
                "a".repeat(40 * 1024)
            ),
            431,
            "headers_too_large",
        ),
    ] {
        let mut stream = served.connect().await;
        let (got, body) = exchange(&mut stream, request.as_bytes()).await;
        assert_eq!(
            (got, code(&body).as_str()),
            (status, expected),
            "{}",
            request.lines().next().unwrap_or_default()
        );
    }
    // What hyper refuses before any service runs is answered by hyper,
    // with the status alone (docs/api.md, "Errors").
    for (request, status) in [
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: ca\r\nX-Huge: {}\r\n\r\n",
                "a".repeat(1024 * 1024)
            ),
            431,
        ),
        ("GET /he llo HTTP/1.1\r\nHost: ca\r\n\r\n".to_string(), 400),
    ] {
        let mut stream = served.connect().await;
        // The server may close before it has read all of a huge head.
        let _ = stream.write_all(request.as_bytes()).await;
        let (answer, _) = until_closed(&mut stream).await;
        assert_eq!(parse(&answer).0, status);
    }
    served.stop().await;
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_serves_no_http2() {
    let served = Served::start(|_| {}).await;
    let mut stream = served.connect().await;
    stream.write_all(H2_PREFACE).await.expect("write");
    let (answer, _) = until_closed(&mut stream).await;
    // An HTTP/2 server's first frame is its SETTINGS (type 4).
    assert!(
        answer.len() < 9 || answer[3] != 4,
        "answered HTTP/2 in plain text: {answer:?}"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_offers_few_streams_and_small_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.cert, cert.cert.pem()).expect("write");
    std::fs::write(&files.key, cert.signing_key.serialize_pem()).expect("write");
    let served = Served::start_with(|_| {}, Some(files)).await;
    let connector = |alpn: &[u8]| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).expect("root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");

    let mut h2 = connector(b"h2")
        .connect(name.clone(), served.connect().await)
        .await
        .expect("TLS");
    h2.write_all(H2_PREFACE).await.expect("write");
    let settings = first_settings(&mut h2).await;
    let setting = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    let streams = setting(0x3).expect("SETTINGS_MAX_CONCURRENT_STREAMS is set");
    assert!(streams <= 8, "{streams} concurrent streams");
    let window = setting(0x4).unwrap_or(65_535);
    assert!(window <= 16 * 1024, "initial stream window {window}");

    // HTTP/1.1 over the same TLS still works.
    let mut h1 = connector(b"http/1.1")
        .connect(name, served.connect().await)
        .await
        .expect("TLS");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: ca\r\n{CLOSE}\r\n");
    assert_eq!(exchange(&mut h1, request.as_bytes()).await.0, 200);
    served.stop().await;
}

/// The (identifier, value) pairs of the server's first non-ACK SETTINGS frame.
async fn first_settings(stream: &mut (impl AsyncRead + Unpin)) -> Vec<(u16, u32)> {
    loop {
        let mut header = [0u8; 9];
        tokio::time::timeout(BOUND, stream.read_exact(&mut header))
            .await
            .expect("a frame in time")
            .expect("frame header");
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0u8; length];
        tokio::time::timeout(BOUND, stream.read_exact(&mut payload))
            .await
            .expect("a frame in time")
            .expect("frame payload");
        let (kind, flags) = (header[3], header[4]);
        if kind == 4 && flags & 1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
        }
    }
}
