//! Router tests: requests through `ca_server::http::app` with `oneshot`, no
//! socket, against a CA assembled as the server assembles it.

mod certs;
mod edge;
mod public;
mod requests;
mod support;
