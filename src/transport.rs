//! Transport failures as data, shared by the HubSpot and Salesforce clients: what went wrong
//! before an answer could be read (refused, reset, TLS, a body cut off), kept apart from HTTP
//! statuses so no failure masquerades as a status code; and [`call`], the one call loop both
//! clients send through, each under its own [`call::ApiPolicy`].

use std::fmt;

pub mod call;

/// Why no usable answer came back (timeouts are their own outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The connection could not be made (refused, no route, DNS).
    Connect,
    /// The connection was reset or closed mid-request.
    Reset,
    /// The TLS handshake or a certificate failed.
    Tls,
    /// An answer came (its status is known) but its body could not be read to the end.
    BodyRead {
        /// The HTTP status that came with it.
        status: u16,
    },
    /// Any other failure to send the request.
    Other,
}

impl TransportError {
    /// Classifies a failure to send a request (not to read its body: see `BodyRead`).
    pub fn of_send(e: &reqwest::Error) -> TransportError {
        let mut words = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused | NotConnected | AddrNotAvailable => return TransportError::Connect,
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                        return TransportError::Reset;
                    }
                    _ => {}
                }
            }
            words.push_str(&s.to_string().to_ascii_lowercase());
            words.push(' ');
            source = s.source();
        }
        if words.contains("certificate") || words.contains("tls") || words.contains("handshake") {
            TransportError::Tls
        } else if words.contains("reset") || words.contains("closed") || words.contains("incomplete message") {
            TransportError::Reset
        } else if e.is_connect() {
            TransportError::Connect
        } else {
            TransportError::Other
        }
    }

    /// What the operator can check, said once the retries are spent.
    pub fn advice(self) -> &'static str {
        match self {
            TransportError::Connect => "is the base URL right and the host reachable?",
            TransportError::Reset => "the connection kept dropping: a proxy or the network?",
            TransportError::Tls => "check the host's certificate and any TLS-intercepting proxy",
            TransportError::BodyRead { .. } => "answers were cut off before their end: a proxy or the network?",
            TransportError::Other => "the request could not be sent",
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect => write!(f, "connection failed"),
            TransportError::Reset => write!(f, "connection reset"),
            TransportError::Tls => write!(f, "TLS failed"),
            TransportError::BodyRead { status } => write!(f, "HTTP {status} body could not be read"),
            TransportError::Other => write!(f, "request not sent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_classified_as_connect() {
        // A port just released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap_err();
        assert_eq!(TransportError::of_send(&e), TransportError::Connect);
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_classified_as_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let e = reqwest::get(format!("http://{addr}/")).await.unwrap_err();
        assert_eq!(TransportError::of_send(&e), TransportError::Reset);
    }
}
