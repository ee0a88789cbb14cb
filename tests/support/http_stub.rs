//! A loopback HTTP/1.1 server that stands in for another party: a webhook
//! receiver that records what the CA posts, or a fake CA whose answers a
//! test chooses byte for byte. It stops when its handle drops.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may stay silent before the stub drops it.
const IDLE: Duration = Duration::from_secs(10);

/// What the stub answers with 200 for one path: extra headers and the body.
pub struct Route {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Route {
    /// Answers `path` with `body` and no extra headers.
    pub fn new(path: &str, body: impl Into<Vec<u8>>) -> Route {
        Route {
            path: path.to_string(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request as the stub received it.
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lower case); fails the test if absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// A running stub; each request it answers is also sent down `received`.
pub struct HttpStub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request, in the order answered.
    pub received: mpsc::Receiver<Received>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpStub {
    /// Starts a stub answering each of `routes` with 200, and 404 otherwise.
    pub fn start(routes: Vec<Route>) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, received) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let routes = Arc::new(routes);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (routes, tx) = (routes.clone(), tx.clone());
                std::thread::spawn(move || {
                    if let Some(request) = answer(stream, &routes) {
                        let _ = tx.send(request);
                    }
                });
            }
        });
        HttpStub {
            url,
            received,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream`, answers it from `routes` and closes the
/// connection; `None` if the peer sent no whole request.
fn answer(stream: TcpStream, routes: &[Route]) -> Option<Received> {
    stream.set_read_timeout(Some(IDLE)).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;

    let route = routes.iter().find(|r| r.path == path);
    let (status, extra, content): (_, &[(String, String)], &[u8]) = match route {
        Some(route) => ("200 OK", &route.headers, &route.body),
        None => ("404 Not Found", &[], &[]),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        content.len()
    );
    for (name, value) in extra {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(response.as_bytes()).ok()?;
    stream.write_all(content).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
