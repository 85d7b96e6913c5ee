//! A real SMTP server on loopback that records what it receives (feature `test-server`).
//!
//! Built on `mailin-embedded`; it runs on its own threads for the life of the process. It can be
//! told to reject chosen recipients with `550` or to answer every recipient with `451`.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};
use tokio::sync::watch;

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The raw message (headers and body).
    pub data: Vec<u8>,
    /// When the final dot arrived.
    pub at: Instant,
}

impl Received {
    /// The raw message as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header with this name (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ");
        head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<Received>>,
    reject: Mutex<HashSet<String>>,
    tempfail: AtomicBool,
    delay_ms: std::sync::atomic::AtomicU64,
    count: Mutex<Option<watch::Sender<usize>>>,
}

#[derive(Clone)]
struct SinkHandler {
    shared: Arc<Shared>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for SinkHandler {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_owned();
        self.to.clear();
        self.data.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if self.shared.tempfail.load(Ordering::SeqCst) {
            return Response::custom(451, "4.3.0 try again later".into());
        }
        if self
            .shared
            .reject
            .lock()
            .expect("lock")
            .contains(&to.to_ascii_lowercase())
        {
            return Response::custom(550, "5.1.1 mailbox unavailable".into());
        }
        self.to.push(to.to_owned());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let delay = self.shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        let message = Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            at: Instant::now(),
        };
        let count = {
            let mut messages = self.shared.messages.lock().expect("lock");
            messages.push(message);
            messages.len()
        };
        if let Some(tx) = self.shared.count.lock().expect("lock").as_ref() {
            tx.send_replace(count);
        }
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, _user: &str, _password: &str) -> Response {
        response::AUTH_OK
    }
}

/// The running server.
#[derive(Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Starts a plain-text server on a free loopback port.
    pub fn start() -> io::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0")?, None)
    }

    /// Starts a server offering STARTTLS with this certificate and key (PEM files).
    pub fn start_tls(cert_path: &str, key_path: &str) -> io::Result<Self> {
        let ssl = SslConfig::SelfSigned {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        };
        Self::start_on(TcpListener::bind("127.0.0.1:0")?, Some(ssl))
    }

    /// Starts a plain-text server on a listener the caller bound (for a fixed port).
    pub fn start_on(listener: TcpListener, ssl: Option<SslConfig>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        *shared.count.lock().expect("lock") = Some(watch::channel(0).0);
        let handler = SinkHandler {
            shared: shared.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("smtp-sink.local")
            .with_num_threads(256)
            .with_tcp_listener(listener);
        if let Some(ssl) = ssl {
            server
                .with_ssl(ssl)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        std::thread::Builder::new()
            .name(format!("smtp-sink-{}", addr.port()))
            .spawn(move || {
                if let Err(e) = server.serve() {
                    eprintln!("smtp sink stopped: {e}");
                }
            })?;
        Ok(SmtpSink { addr, shared })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().expect("lock").clone()
    }

    /// Rejects this recipient with `550` from now on.
    pub fn reject(&self, recipient: &str) {
        self.shared
            .reject
            .lock()
            .expect("lock")
            .insert(recipient.to_ascii_lowercase());
    }

    /// While true, every recipient gets `451` (a temporary failure).
    pub fn set_tempfail(&self, on: bool) {
        self.shared.tempfail.store(on, Ordering::SeqCst);
    }

    /// Makes every message take this long to be accepted (a slow server).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many distinct `Message-ID`s arrived, and how many messages repeated one.
    pub fn distinct_and_duplicates(&self) -> (usize, usize) {
        let messages = self.messages();
        let ids: HashSet<String> = messages
            .iter()
            .filter_map(|m| m.header("Message-ID"))
            .collect();
        (ids.len(), messages.len() - ids.len())
    }

    /// Waits until at least `n` messages arrived, or `timeout` passed; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let mut rx = self
            .shared
            .count
            .lock()
            .expect("lock")
            .as_ref()
            .map(|tx| tx.subscribe())
            .expect("sink started");
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        *rx.borrow()
    }
}
