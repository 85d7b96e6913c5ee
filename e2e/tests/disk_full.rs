//! A full disk under SQLite, for real: the database lives on a small tmpfs that the test
//! fills with a file. Ordering answers 503 with `Retry-After` (never 500), `/ready` says not
//! ready, and everything works again by itself once space returns, without a restart.

use inventory_e2e as support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inventory_mail::testing::SmtpSink;
use serde_json::json;
use support::{App, Client};

/// A tmpfs of `size` mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

async fn place(api: &Client, token: &str) -> support::Reply {
    api.send(
        reqwest::Method::POST,
        "/orders/place",
        &[],
        Some(token),
        Some(json!({"product_id": "product-1"})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_root, ignore = "mounting a tmpfs needs root")]
async fn a_full_disk_answers_503_and_recovers_by_itself() {
    let fs = Tmpfs::mount("4m").expect("a tmpfs can be mounted (the build script saw root)");
    let sink = SmtpSink::start().unwrap();
    let app = App::start(&support::sqlite_env(&fs.0, sink.addr().port())).await;
    let api = app.api.clone();
    let token = api.token("full@example.com", "reliable-password").await;
    let first = place(&api, &token).await;
    assert_eq!(first.status, 200);
    let first = first.json();
    let first_id = first["order_id"].as_str().unwrap().to_owned();

    let filler = fill(&fs.0);
    // Enough writes to hit the full disk whatever SQLite had buffered.
    let mut refused = 0;
    for _ in 0..20 {
        let resp = place(&api, &token).await;
        let status = resp.status;
        assert_ne!(status, 500, "{}", resp.text);
        if status == 503 {
            assert!(resp.headers.contains_key("retry-after"));
            refused += 1;
        }
    }
    assert!(refused > 0, "the full disk never showed");
    let (ready, body) = api.get("/ready", None).await;
    assert_eq!(ready, 503, "not ready while writes fail: {body}");
    let (status, body) = api
        .post(
            &format!("/orders/{first_id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 503, "cancel on a full disk: {body}");

    // Space returns: no restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    api.wait_until("/ready", None, |b| b["status"] == "ready")
        .await;
    let resp = place(&api, &token).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let (status, body) = api
        .post(
            &format!("/orders/{first_id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(freed.elapsed() < Duration::from_secs(10));
    eprintln!(
        "full disk: {refused} of 20 orders refused with 503, ready and ordering again {:.1} s after space returned",
        freed.elapsed().as_secs_f64()
    );
}
