//! A TCP proxy to a gRPC server (the Firestore emulator) that reads the HTTP/2 frames going
//! through it: it counts the calls clients open and the bytes each way, and can lose the
//! answer to one call: the connection that carries it is closed as the answer arrives, after
//! the server has done the work. Used by the Firestore tests (a commit whose answer is lost)
//! and by the cost benchmark (calls per order).
//!
//! HTTP/2: after the client's 24-byte preface, both directions are frames of a 9-byte header
//! (24-bit length, type, flags, 31-bit stream id) and a payload. A call is a stream opened by
//! a HEADERS frame (type 1) from the client; its request message travels in DATA frames
//! (type 0), uncompressed (gRPC compression is off unless asked for).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the proxy saw and what it is asked to do.
#[derive(Default)]
struct Shared {
    calls: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    /// Bytes a request must contain for its answer to be lost (once).
    lose_answer_to: Mutex<Option<Vec<u8>>>,
    answers_lost: AtomicU64,
}

/// The proxy; it runs until the process ends.
pub struct GrpcProxy {
    /// `host:port` to give clients (as `FIRESTORE_EMULATOR_HOST`).
    pub addr: String,
    shared: Arc<Shared>,
}

/// Complete frames out of a byte stream.
struct Frames {
    pending: Vec<u8>,
    preface: usize,
}

impl Frames {
    fn new(preface: usize) -> Frames {
        Frames {
            pending: Vec::new(),
            preface,
        }
    }

    /// Adds `bytes` and hands each complete frame (type, stream, payload) to `each`.
    fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(u8, u32, &[u8])) {
        self.pending.extend_from_slice(bytes);
        let skipped = self.preface.min(self.pending.len());
        self.pending.drain(..skipped);
        self.preface -= skipped;
        let mut at = 0;
        while self.pending.len() >= at + 9 {
            let h = &self.pending[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if self.pending.len() < at + 9 + len {
                break;
            }
            each(h[3], stream, &self.pending[at + 9..at + 9 + len]);
            at += 9 + len;
        }
        self.pending.drain(..at);
    }
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;

impl GrpcProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> GrpcProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        GrpcProxy::serve(listener, upstream)
    }

    /// Forwards the connections of `listener` to `upstream`.
    pub fn serve(listener: tokio::net::TcpListener, upstream: String) -> GrpcProxy {
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, accepting.clone()));
            }
        });
        GrpcProxy { addr, shared }
    }

    /// Calls opened, bytes to the server, bytes to the clients, so far.
    pub fn traffic(&self) -> [u64; 3] {
        let s = &self.shared;
        [&s.calls, &s.to_server, &s.to_client].map(|c| c.load(Ordering::Relaxed))
    }

    /// Loses the answer to the next call whose request contains `marker`: the server gets the
    /// request and does the work, and the connection is closed as its answer arrives.
    pub fn lose_answer_to(&self, marker: &[u8]) {
        *self.shared.lose_answer_to.lock().unwrap() = Some(marker.to_vec());
    }

    /// How many answers were lost.
    pub fn answers_lost(&self) -> u64 {
        self.shared.answers_lost.load(Ordering::SeqCst)
    }
}

/// Relays one connection both ways, reading its frames.
async fn relay(client: tokio::net::TcpStream, server: tokio::net::TcpStream, shared: Arc<Shared>) {
    // Small frames go on at once, as on a direct connection (no Nagle delay).
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // The stream whose answer is to be lost, once its request has been seen.
    let doomed: Arc<Mutex<Option<u32>>> = Arc::default();
    let upstream = {
        let (shared, doomed) = (shared.clone(), doomed.clone());
        async move {
            let (mut buf, mut frames, mut newest) = (vec![0u8; 64 * 1024], Frames::new(24), 0);
            while let Ok(n) = from_client.read(&mut buf).await {
                if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                shared.to_server.fetch_add(n as u64, Ordering::Relaxed);
                frames.feed(&buf[..n], |kind, stream, payload| {
                    if kind == HEADERS && stream > newest {
                        newest = stream;
                        shared.calls.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut marker = shared.lose_answer_to.lock().unwrap();
                    let hit = marker
                        .as_deref()
                        .is_some_and(|m| payload.windows(m.len()).any(|w| w == m));
                    if kind == DATA && hit {
                        *marker = None;
                        *doomed.lock().unwrap() = Some(stream);
                    }
                });
            }
        }
    };
    let downstream = async move {
        let (mut buf, mut frames) = (vec![0u8; 64 * 1024], Frames::new(0));
        while let Ok(n) = from_server.read(&mut buf).await {
            if n == 0 {
                return;
            }
            let mut answered = false;
            let doomed = *doomed.lock().unwrap();
            frames.feed(&buf[..n], |_, stream, _| answered |= Some(stream) == doomed);
            if answered {
                // The server has answered: close the connection instead of passing it on.
                shared.answers_lost.fetch_add(1, Ordering::SeqCst);
                let _ = to_client.shutdown().await;
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
            shared.to_client.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    // Either side ending ends the connection (both halves are dropped).
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
