//! What the benchmark examples share: starting the release server next to them and waiting
//! for it, registering a buyer, percentiles. Not an example of its own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The password every benchmark buyer registers with.
pub const PASSWORD: &str = "load-test-password";

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary built next to the running one (`target/release/examples/NAME`).
pub fn sibling(name: &str) -> PathBuf {
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the `server` example on a free loopback port with these variables (nothing else
/// from this process's environment but what the OS passes on) and waits for its first 200 on
/// `/health`. Returns the server and that wait in milliseconds (the cold start).
pub async fn start_server(envs: &[(&str, String)]) -> (Server, f64) {
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(sibling("server"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the release server next to this binary (build the `server` example)");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cold = started.elapsed().as_secs_f64() * 1000.0;
    (Server { child, url }, cold)
}

/// Registers `email` (with [`PASSWORD`]) and returns its access token.
pub async fn token(client: &reqwest::Client, url: &str, email: &str) -> String {
    let r: Value = client
        .post(format!("{url}/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().expect("registered").to_owned()
}

/// The `p` quantile (0 to 1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
