//! Errors as one line of text: what a person reads in a CLI message, a log
//! field or a start-up failure. Libraries such as reqwest keep the useful
//! part (a refused connection, an untrusted certificate) in the causes of an
//! error, not in its own message, so the causes are always spelled out.

/// `error` and all its causes on one line, `outer: cause: root cause`. A
/// cause whose text its outer message already contains is left out, since
/// many libraries repeat their cause in their own message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        cause: Option<Box<Layer>>,
    }

    fn layers(messages: &[&'static str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |cause, message| {
                Some(Layer {
                    message,
                    cause: cause.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn every_cause_is_spelled_out_once() {
        let error = layers(&["request failed", "connect", "connection refused"]);
        assert_eq!(
            error_chain(&error),
            "request failed: connect: connection refused"
        );
        let repeating = layers(&["tls: invalid peer certificate", "invalid peer certificate"]);
        assert_eq!(error_chain(&repeating), "tls: invalid peer certificate");
        assert_eq!(error_chain(&layers(&["alone"])), "alone");
    }
}
