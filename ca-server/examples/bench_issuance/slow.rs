//! The soak's slow clients (`--slow N`): N connections that each hold a
//! place on the CA as cheaply as an attacker can, while the benchmark's
//! normal clients measure their latency beside them. Four kinds, in turn:
//! headers sent a line a second and never finished (slowloris), a declared
//! 60,000-byte body dripped a byte a second, a kept-alive connection left
//! idle after one request, and an HTTP/2 connection with as many streams as
//! the CA allows, each with a body started and never finished. A connection
//! the CA closes is opened again at once, so the CA carries N of them the
//! whole time; how often that happened is reported. They come from
//! 127.0.0.2 onwards, 200 per address (under the default per-address cap),
//! so the normal clients on 127.0.0.1 are not held to the slow ones' cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// Connections opened per source address.
const PER_ADDRESS: usize = 200;
/// How often a slow client sends its next byte or line.
const DRIP: Duration = Duration::from_secs(1);

/// The running slow clients.
pub struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connections the CA has closed (each was opened again).
    pub closed_by_server: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SlowClients {
    /// Starts `count` slow clients against the CA at `addr` (TLS with `tls`).
    pub fn start(count: usize, addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let closed_by_server = Arc::new(AtomicUsize::new(0));
        let tasks = (0..count)
            .map(|i| {
                let group = i / PER_ADDRESS;
                let source = Ipv4Addr::new(127, 0, (group / 250) as u8, (2 + group % 250) as u8);
                let (stop, closed, tls) = (stop.clone(), closed_by_server.clone(), tls.clone());
                tokio::spawn(async move {
                    // Spread the start over a second rather than all at once.
                    tokio::time::sleep(Duration::from_micros((i as u64 * 997) % 1_000_000)).await;
                    while !stop.load(Ordering::Relaxed) {
                        let held = hold(i % 4, source, addr, tls.clone()).await;
                        if held.is_ok() {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            })
            .collect();
        SlowClients {
            stop,
            closed_by_server,
            tasks,
        }
    }

    /// Stops every slow client and closes its connection.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Holds one connection of `kind` until the CA closes it (`Ok`) or it
/// cannot be opened (`Err`).
async fn hold(
    kind: usize,
    source: Ipv4Addr,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let tcp = socket.connect(addr).await?;
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![if kind == 3 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    match kind {
        0 => {
            writer
                .write_all(b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\n")
                .await?;
            drip(&mut reader, &mut writer, b"X-Slow: a\r\n").await;
        }
        1 => {
            writer
                .write_all(
                    b"POST /v1/certs/user HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
                      Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
                )
                .await?;
            drip(&mut reader, &mut writer, b" ").await;
        }
        2 => {
            writer
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: ca\r\n\r\n")
                .await?;
            until_closed(&mut reader).await;
        }
        _ => {
            let stream = reader.unsplit(writer);
            let (mut client, connection) = h2::client::handshake(stream).await?;
            let connection = tokio::spawn(connection);
            let mut bodies = Vec::new();
            // As many streams as the CA lets this connection open.
            for _ in 0..200 {
                client = match tokio::time::timeout(DRIP, client.ready()).await {
                    Ok(Ok(ready)) => ready,
                    _ => break,
                };
                let request = http::Request::post("https://ca/v1/certs/user")
                    .header("authorization", "Bearer x")
                    .header("content-length", "60000")
                    .body(())?;
                let Ok((_response, mut body)) = client.send_request(request, false) else {
                    break;
                };
                let _ = body.send_data(Bytes::from_static(b"{"), false);
                bodies.push(body);
            }
            let _ = connection.await;
        }
    }
    Ok(())
}

/// Sends `piece` every [`DRIP`] until the CA closes the connection.
async fn drip(
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
    piece: &[u8],
) {
    let closed = until_closed(reader);
    tokio::pin!(closed);
    loop {
        tokio::select! {
            () = &mut closed => return,
            () = tokio::time::sleep(DRIP) => {
                if writer.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads (and drops) whatever the CA sends until it closes the connection.
async fn until_closed(reader: &mut (impl AsyncRead + Unpin)) {
    let mut buffer = [0u8; 1024];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            return;
        }
    }
}
