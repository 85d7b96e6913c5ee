//! Shared support of the workspace's end-to-end tests, benchmarks and load tools (unpublished).
//!
//! The service for tests: in this process through its router (no process, no port), or the
//! example programs of `inventory-kit` as real processes where the process itself is under
//! test. They live in a package of their own so that the service's first build
//! (`cargo run --release --example server`) compiles none of what only tests use.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub mod bench;
pub mod grpc_proxy;

pub const JWT_SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123456789";

/// The path of a built example of `inventory-kit` (`cargo test --workspace` builds them before
/// it runs any test). A missing one, or one older than a source it is built from (this package
/// tested alone with `-p inventory-e2e` does not rebuild them), fails with the command to run:
/// a test never runs an old build of the service without saying so.
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    let rebuild = "run `cargo build -p inventory-kit --examples --all-features` first (`cargo test --workspace` does)";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} not built: {rebuild}", path.display()));
    if let Some((at, newer)) = newest_source()
        && *at > built
    {
        panic!(
            "{} is older than {}: {rebuild}",
            path.display(),
            newer.display()
        );
    }
    path
}

/// The most recently modified source the examples are built from, looked up once per test
/// process (tests start the examples many times).
fn newest_source() -> &'static Option<(std::time::SystemTime, PathBuf)> {
    static NEWEST: std::sync::OnceLock<Option<(std::time::SystemTime, PathBuf)>> =
        std::sync::OnceLock::new();
    NEWEST.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        [
            "src",
            "examples",
            "inventory-core/src",
            "inventory-sql/src",
            "inventory-sql/migrations",
            "inventory-firestore/src",
            "inventory-mail/src",
        ]
        .iter()
        .filter_map(|dir| newest(&root.join(dir)))
        .max_by_key(|(at, _)| *at)
    })
}

/// The most recently modified file below `dir`, with its time.
fn newest(dir: &std::path::Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        };
        if let Some(found) = found
            && best.as_ref().is_none_or(|(t, _)| found.0 > *t)
        {
            best = Some(found);
        }
    }
    best
}

/// A running example program; stopped with SIGKILL when dropped (unless stopped before).
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub logs: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `name` with these variables (plus `HOST=127.0.0.1`, `PORT=0`, text logs) and waits
    /// for its "listening on" line.
    pub fn start(name: &str, envs: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(example(name));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn example");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push_str(&line);
                    logs.lock().unwrap().push('\n');
                    if let Some(i) = line.find("listening on http://") {
                        let rest = &line[i + "listening on ".len()..];
                        let url: String = rest
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\u{1b}')
                            .collect();
                        let _ = tx.send(url);
                    }
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Proc { child, url, logs },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100)); // let the reader threads finish
                panic!(
                    "{name} did not start ({status:?}); logs:\n{}",
                    logs.lock().unwrap()
                );
            }
        }
    }

    /// Runs `name` to completion (for start-up failures) and returns its status and output.
    pub fn run_to_exit(name: &str, envs: &[(&str, String)]) -> (ExitStatus, String) {
        Self::run_to_exit_with_args(name, &[], envs)
    }

    /// Runs `name` with arguments to completion (only `envs` set, plus `HOST=127.0.0.1`,
    /// `PORT=0`, no colour) and returns its status and output.
    pub fn run_to_exit_with_args(
        name: &str,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> (ExitStatus, String) {
        let mut cmd = Command::new(example(name));
        cmd.env_clear()
            .env("NO_COLOR", "1")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run example");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("wait")
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The service started in this process from variables (the same [`Settings`] the server
/// reads): requests go through its router with `tower::ServiceExt::oneshot`.
///
/// [`Settings`]: inventory_kit::Settings
pub struct App {
    pub service: inventory_kit::http::Service,
    pub api: Client,
}

impl App {
    /// Starts the service on these variables (plus nothing from the process environment).
    pub async fn start(envs: &[(&str, String)]) -> App {
        let settings = inventory_kit::Settings::from_vars(envs.iter().cloned())
            .unwrap_or_else(|e| panic!("settings: {e}"));
        let metrics = inventory_kit::http::install_recorder().expect("recorder");
        let service = inventory_kit::http::Service::start(&settings, Some(metrics))
            .await
            .unwrap_or_else(|e| panic!("service did not start: {e}"));
        let api = Client::in_process(service.router.clone());
        App { service, api }
    }

    /// Stops the dispatcher after its in-flight sends.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// An answer: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (a string value when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::String(self.text.clone()))
    }
}

/// A tiny client: over HTTP to a process, or straight into a router.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    router: Option<axum::Router>,
    peer: std::net::SocketAddr,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            router: None,
            peer: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    /// A client that calls `router` in this process, as a peer at 127.0.0.1.
    pub fn in_process(router: axum::Router) -> Client {
        Client {
            router: Some(router),
            ..Client::new("http://in-process")
        }
    }

    /// Sends a request with extra headers and a raw body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        match &self.router {
            Some(router) => {
                use tower::ServiceExt;
                let mut req = axum::http::Request::builder()
                    .method(method.as_str())
                    .uri(path);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let mut req = req.body(axum::body::Body::from(body)).expect("request");
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(self.peer));
                let resp = router.clone().oneshot(req).await.expect("infallible");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .expect("body");
                Reply {
                    status,
                    headers,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            None => {
                let mut req = self.http.request(method, format!("{}{path}", self.base));
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let resp = req.body(body).send().await.expect("request sent");
                let status = resp.status().as_u16();
                let mut out = axum::http::HeaderMap::new();
                for (k, v) in resp.headers() {
                    if let (Ok(k), Ok(v)) = (
                        axum::http::HeaderName::from_bytes(k.as_str().as_bytes()),
                        axum::http::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        out.append(k, v);
                    }
                }
                Reply {
                    status,
                    headers: out,
                    text: resp.text().await.unwrap_or_default(),
                }
            }
        }
    }

    /// Sends a JSON body (or none) with extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("authorization", b));
        }
        let bytes = match &body {
            Some(b) => {
                all.push(("content-type", "application/json"));
                serde_json::to_vec(b).unwrap()
            }
            None => Vec::new(),
        };
        self.request(method, path, &all, bytes).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let reply = self.send(method, path, &[], token, body).await;
        (reply.status, reply.json())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path, token, None).await
    }

    /// Registers (or logs in) and returns a token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let creds = serde_json::json!({ "email": email, "password": password });
        let (status, body) = self.post("/auth/register", None, creds.clone()).await;
        if status == 200 {
            return body["access_token"].as_str().unwrap().to_owned();
        }
        let (status, body) = self.post("/auth/login", None, creds).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Polls `GET path` until `check` holds (bounded: 10 s).
    pub async fn wait_until(
        &self,
        path: &str,
        token: Option<&str>,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.get(path, token).await;
            if check(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not met on {path}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Variables for a server on SQLite in `dir` sending mail to `smtp_port`.
pub fn sqlite_env(dir: &std::path::Path, smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.join("e2e.db").display())),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", smtp_port.to_string()),
        ("SMTP_USE_TLS", "false".to_owned()),
        ("SMTP_FROM", "Shop <shop@example.com>".to_owned()),
        ("ADMIN_EMAILS", "admin@example.com".to_owned()),
        // These tests get their admin from ADMIN_EMAILS without reading its mail; the
        // verification tests turn this back on.
        ("ADMIN_REQUIRES_VERIFIED_EMAIL", "false".to_owned()),
        (
            "SEED_PRODUCTS",
            r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":5},{"product_id":"scarce","product_name":"Scarce","quantity":1}]"#.to_owned(),
        ),
        ("DISPATCHER_RETRY_BASE_MS", "50".to_owned()),
    ]
}

/// The same with `DATABASE_URL` pointing at a fresh PostgreSQL schema, or `None` to skip.
pub async fn postgres_env(smtp_port: u16) -> Option<Vec<(&'static str, String)>> {
    let url = inventory_sql::testing::postgres_url()?;
    let schema = inventory_sql::testing::fresh_schema(&url).await;
    let mut env = sqlite_env(std::path::Path::new("/nonexistent"), smtp_port);
    env[0].1 = inventory_sql::testing::url_with_schema(&url, &schema);
    Some(env)
}

/// The same on a fresh project of the Firestore emulator (`FIRESTORE_EMULATOR_HOST`), or
/// `None` when no emulator is configured.
pub fn firestore_env(smtp_port: u16) -> Option<Vec<(&'static str, String)>> {
    let host = std::env::var("FIRESTORE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())?;
    let mut env = sqlite_env(std::path::Path::new("/nonexistent"), smtp_port);
    let project = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    env[0].1 = format!("firestore://{project}");
    env.push(("FIRESTORE_EMULATOR_HOST", host));
    Some(env)
}

/// [`postgres_env`] with the database reached through a [`TcpProxy`], to cut it on demand.
pub async fn proxied_postgres_env(
    smtp_port: u16,
) -> Option<(Vec<(&'static str, String)>, TcpProxy)> {
    let mut env = postgres_env(smtp_port).await?;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = env[0].1.clone();
    let proxied = url.replacen(":5432/", &format!(":{}/", proxy.port), 1);
    assert_ne!(url, proxied, "the test URL names port 5432");
    set(&mut env, "DATABASE_URL", proxied);
    Some((env, proxy))
}

/// A TCP proxy on loopback that can cut every connection and refuse new ones, to simulate a
/// database outage without touching the shared server.
pub struct TcpProxy {
    pub port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let (down, conns) = (down.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if down.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(inbound); // refused: closed at once
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        TcpProxy {
            port,
            down,
            conns,
            _accept: accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A loopback port with nothing listening (connections are refused).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces a variable of an environment list.
pub fn set(env: &mut Vec<(&'static str, String)>, key: &'static str, value: impl Into<String>) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.into()));
}

/// Reads one counter of a Prometheus text page.
pub async fn metric(api: &Client, name: &str) -> f64 {
    let text = api
        .request(reqwest::Method::GET, "/metrics", &[], Vec::new())
        .await
        .text;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// POSTs a JSON body over a raw connection and returns the status, even when the server
/// answers (413) and closes before the whole body was written, which HTTP clients report as an
/// error instead.
pub async fn raw_post_status(base: &str, path: &str, body: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await; // may fail once the server has answered
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(2).any(|w| w == b"\r\n") {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    sender.abort();
    let line = String::from_utf8_lossy(&response);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}
