//! Router tests: requests through `ca_server::http::app` with `oneshot`, no
//! socket, against a CA assembled as the server assembles it; and, in
//! `connections.rs`, the same CA served on a real loopback socket.

mod certs;
mod connections;
mod edge;
mod public;
mod requests;
mod support;
