//! Property-based fuzzing of the HTTP API from its own OpenAPI document with schemathesis:
//! no 5xx, and every documented error body is `{"detail"}`. Bounded in examples and time.
//!
//! Needs `INVENTORY_TEST_SCHEMATHESIS` (the `schemathesis` program; `.ci/run` installs it from
//! PyPI into a virtualenv). Without it the test prints a notice and passes, unless
//! `INVENTORY_REQUIRE_BACKENDS` is set.

use inventory_e2e as support;

use inventory_mail::testing::SmtpSink;
use support::{Client, Proc, set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_schemathesis,
    ignore = "INVENTORY_TEST_SCHEMATHESIS is not set"
)]
async fn schemathesis_finds_no_server_errors() {
    let st = std::env::var("INVENTORY_TEST_SCHEMATHESIS")
        .expect("INVENTORY_TEST_SCHEMATHESIS is set (the build script saw it)");
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    set(&mut env, "LOGIN_RATE_LIMIT", "off");
    set(&mut env, "ARGON2_MEMORY_KIB", "64");
    set(&mut env, "ARGON2_ITERATIONS", "1");
    let server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    // An admin token, so admin operations are exercised past the 403.
    let token = api.token("admin@example.com", "admin-password").await;
    let url = format!("{}/openapi.json", server.url);
    let auth = format!("Authorization: Bearer {token}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .args(["run", &url, "-H", &auth])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            // One worker: with two, schemathesis's threads parse Python ASTs at once and
            // CPython 3.11 sometimes fails that ("AST constructor recursion depth mismatch"),
            // a tool crash reported as an error of whatever operation it was testing.
            .args([
                "--max-examples",
                "40",
                "--workers",
                "1",
                "--seed",
                "20261128",
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failures"))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\nserver logs:\n{}",
        server.logs()
    );
    assert!(
        !server.logs().contains("internal error"),
        "{}",
        server.logs()
    );
}
