//! Authentication, input handling, rate limiting and secrets: through the service's router
//! in-process, and against the server process where logs, sockets or process-wide counters
//! are what is tested.

use inventory_e2e as support;

use std::time::Duration;

use base64::Engine as _;
use inventory_mail::testing::SmtpSink;
use serde_json::json;
use support::{App, Client, Proc, set};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[tokio::test]
async fn unknown_and_known_emails_cost_the_same_hashing_work() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start(
        "server",
        &support::sqlite_env(dir.path(), sink.addr().port()),
    );
    let api = Client::new(&server.url);
    api.token("known@example.com", "known-password").await;
    let verifications = || support::metric(&api, "inventory_password_verifications_total");
    let before = verifications().await;
    let (s, known) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "known@example.com", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s, 401);
    let after_known = verifications().await;
    let (s, unknown) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s, 401);
    let after_unknown = verifications().await;
    assert_eq!(
        after_known - before,
        1.0,
        "one argon2 verification for a known email"
    );
    assert_eq!(
        after_unknown - after_known,
        1.0,
        "and one for an unknown email"
    );
    assert_eq!(known, unknown, "the same answer");
}

#[tokio::test]
async fn forged_tokens_are_rejected() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    let token = api.token("victim@example.com", "victim-password").await;
    let parts: Vec<&str> = token.split('.').collect();
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let mut admin_claims = payload.clone();
    admin_claims["role"] = json!("admin");
    let mut expired = payload.clone();
    expired["exp"] = json!(1);
    let forged = b64(admin_claims.to_string().as_bytes());
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let hs512_header = b64(br#"{"alg":"HS512","typ":"JWT"}"#);
    let other_key = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        encode(
            &Header::default(),
            &admin_claims,
            &EncodingKey::from_secret(b"some-other-secret-of-at-least-32-bytes").unwrap(),
        )
        .unwrap()
    };
    for (name, bad) in [
        (
            "tampered payload",
            format!("{}.{forged}.{}", parts[0], parts[2]),
        ),
        ("alg none", format!("{none_header}.{forged}.")),
        (
            "wrong algorithm",
            format!("{hs512_header}.{}.{}", parts[1], parts[2]),
        ),
        (
            "expired",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(expired.to_string().as_bytes()),
                parts[2]
            ),
        ),
        ("another key", other_key),
        ("empty", String::new()),
    ] {
        let (s, b) = api.get("/orders", Some(&bad)).await;
        assert_eq!(s, 401, "{name}: {b}");
        assert!(b["detail"].is_string());
    }
    let (s, _) = api
        .post(
            "/products",
            Some(&token),
            json!({"product_id": "x", "product_name": "X", "quantity": 1}),
        )
        .await;
    assert_eq!(s, 403, "a customer token cannot reach admin endpoints");
}

#[tokio::test]
async fn hostile_input_is_refused_or_stored_verbatim() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    for (password, expected) in [("", 422), ("short", 422)] {
        let (s, b) = api
            .post(
                "/auth/register",
                None,
                json!({"email": "p@example.com", "password": password}),
            )
            .await;
        assert_eq!(s, expected, "{b}");
    }
    let huge = "x".repeat(1024 * 1024);
    let body = json!({"email": "p@example.com", "password": huge}).to_string();
    let status = api
        .request(
            reqwest::Method::POST,
            "/auth/register",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await
        .status;
    assert_eq!(status, 413, "a 1 MB password never reaches the hasher");
    let long_email = format!("{}@example.com", "a".repeat(40_000));
    let (s, _) = api
        .post(
            "/auth/register",
            None,
            json!({"email": long_email, "password": "long-enough"}),
        )
        .await;
    assert_eq!(s, 422);
    for email in [
        "not-an-email",
        "a@b",
        "<script>@example.com",
        "a@example.com\r\nBcc: x@example.com",
    ] {
        let (s, b) = api
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": "long-enough"}),
            )
            .await;
        assert_eq!(s, 422, "{email:?}: {b}");
    }
    // SQL metacharacters are data, not code.
    let admin = api.token("admin@example.com", "admin-password").await;
    let name = "Robert'); DROP TABLE orders;-- \"quoted\" ünï";
    let (s, b) = api
        .post(
            "/products",
            Some(&admin),
            json!({"product_id": "bobby-tables", "product_name": name, "quantity": 2}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, p) = api.get("/products/bobby-tables", None).await;
    assert_eq!(p["product_name"], name);
    let token = api.token("o'brien+tag@example.com", "quote-password").await;
    let (s, b) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "bobby-tables"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        sink.wait_for(1, std::time::Duration::from_secs(10)).await,
        1
    );
    assert!(
        sink.messages()[0]
            .text()
            .contains("Robert&#x27;); DROP TABLE orders;")
            || sink.messages()[0]
                .text()
                .contains("Robert'); DROP TABLE orders;")
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_account_and_per_address() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    set(&mut env, "LOGIN_RATE_LIMIT_PER_ACCOUNT", "3");
    set(&mut env, "LOGIN_RATE_LIMIT_PER_IP", "8");
    let app = App::start(&env).await;
    let api = app.api.clone();
    api.token("limited@example.com", "limited-password").await; // registration is not limited
    let login = |email: &'static str| {
        let api = api.clone();
        async move {
            api.post(
                "/auth/login",
                None,
                json!({"email": email, "password": "limited-password"}),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(login("limited@example.com").await.0, 200);
    }
    let (s, b) = login("LIMITED@example.com").await;
    assert_eq!(
        s, 429,
        "the account's quota is spent (case-insensitively): {b}"
    );
    assert!(b["detail"].is_string());
    let r = api
        .send(
            reqwest::Method::POST,
            "/auth/login",
            &[],
            None,
            Some(json!({"email": "limited@example.com", "password": "x"})),
        )
        .await;
    assert!(r.headers.contains_key("retry-after"));
    // Other accounts from the same address until the address's quota is spent.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(login("other@example.com").await.0);
    }
    assert!(
        statuses.contains(&429),
        "the address is limited too: {statuses:?}"
    );
    assert!(support::metric(&api, "inventory_login_rate_limited_total").await >= 2.0);
}

#[tokio::test]
async fn logs_never_contain_secrets() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    let smtp_password = "smtp-pa55word-that-must-not-leak";
    set(&mut env, "SMTP_USER", "mailer");
    set(&mut env, "SMTP_PASSWORD", smtp_password);
    set(&mut env, "LOG_FORMAT", "json");
    set(&mut env, "RUST_LOG", "debug");
    let mut server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let password = "user-pa55word-that-must-not-leak";
    let token = api.token("secret@example.com", password).await;
    let (s, _) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "secret@example.com", "password": "wrong-pa55word-leak"}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(s, 200);
    // The sink offers no AUTH on a plain connection, so the send fails and is logged with
    // the server's answer: exactly where credentials could leak.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(server.logs().contains("email not sent") || server.logs().contains("email sent")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no send attempt logged:\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(server.terminate().success());
    let logs = server.logs();
    assert!(
        logs.lines().count() > 10,
        "debug logs were written:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains(r#""severity":"INFO""#)),
        "JSON lines with a severity:\n{logs}"
    );
    for secret in [
        password,
        "wrong-pa55word-leak",
        &token,
        smtp_password,
        support::JWT_SECRET,
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}

#[tokio::test]
async fn random_methods_and_paths_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), support::closed_port())).await;
    let api = app.api.clone();
    let size = || async {
        let (status, body) = api.get("/metrics", None).await;
        assert_eq!(status, 200);
        body.as_str().unwrap().len()
    };
    // Every route's labels exist once before the flood.
    for path in ["/health", "/products", "/orders", "/nope"] {
        api.get(path, None).await;
        let m = reqwest::Method::from_bytes(b"BREW").unwrap();
        api.call(m, path, None, None).await;
    }
    let before = size().await;
    for i in 0..300u32 {
        let method = reqwest::Method::from_bytes(format!("X{i:08X}").as_bytes()).unwrap();
        api.call(method, "/health", None, None).await;
        api.get(&format!("/random/{i}/{}", i * 7919), None).await;
        api.call(
            reqwest::Method::from_bytes(format!("Z{i}").as_bytes()).unwrap(),
            &format!("/x{i}"),
            None,
            None,
        )
        .await;
    }
    let after = size().await;
    assert!(
        after < before + 2048,
        "900 requests with random methods and paths grew /metrics from {before} to {after} bytes"
    );
    let (_, text) = api.get("/metrics", None).await;
    assert!(
        !text.as_str().unwrap().contains("X00000001"),
        "a client-chosen method became a label"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_health_keeps_answering() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), support::closed_port());
    set(&mut env, "MAX_CONNECTIONS", "50");
    set(&mut env, "HEADER_READ_TIMEOUT_SECS", "1");
    let server = Proc::start("server", &env);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // 300 clients that never finish their headers, and 20 that send nothing at all.
    let mut slow = Vec::new();
    for i in 0..320 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i < 300 {
            let _ = s
                .write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .await;
        }
        slow.push(s);
    }
    // The service still answers, within a few header deadlines.
    let api = Client::new(&server.url);
    let started = std::time::Instant::now();
    let (status, _) =
        tokio::time::timeout(std::time::Duration::from_secs(20), api.get("/health", None))
            .await
            .expect("/health answers while slow clients hold connections");
    assert_eq!(status, 200);
    eprintln!(
        "/health answered after {:?} with 320 slow clients",
        started.elapsed()
    );
    // Every slow connection is closed by the server (EOF, possibly after a 408).
    let closed = futures::future::join_all(slow.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }))
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} slow connections were never closed");
    assert_eq!(api.get("/health", None).await.0, 200);
}

#[tokio::test]
async fn a_token_of_a_user_that_does_not_exist_is_401_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), support::closed_port())).await;
    let api = app.api.clone();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": uuid::Uuid::now_v7().to_string(),
        "email": "ghost@example.com",
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "ver": 0,
    });
    let ghost = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(support::JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    for (method, path) in [
        ("POST", "/orders/place"),
        ("GET", "/orders"),
        ("GET", "/orders?all=true"),
        ("POST", "/products"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == "POST")
            .then(|| json!({"product_id": "product-1", "product_name": "x", "quantity": 1}));
        let (status, b) = api.call(m, path, Some(&ghost), body).await;
        assert_eq!(status, 401, "{method} {path}: {b}");
    }
}

/// A login or registration from the client `from` (behind a trusted proxy).
async fn auth_from(
    api: &Client,
    path: &str,
    from: &str,
    email: &str,
    password: &str,
) -> support::Reply {
    api.send(
        reqwest::Method::POST,
        path,
        &[("x-forwarded-for", from)],
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn a_guessing_client_cannot_lock_the_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), support::closed_port());
    set(&mut env, "TRUSTED_PROXIES", "127.0.0.1/32");
    set(&mut env, "LOGIN_RATE_LIMIT_PER_ACCOUNT", "3");
    set(&mut env, "LOGIN_RATE_LIMIT_PER_IP", "100");
    set(&mut env, "REGISTER_RATE_LIMIT_PER_IP", "3");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let owner = "owner@example.com";
    let r = auth_from(
        &api,
        "/auth/register",
        "198.51.100.10",
        owner,
        "owner-password",
    )
    .await;
    assert_eq!(r.status, 200);

    // A bot at one address guesses: it locks itself out...
    let bot = "203.0.113.66";
    for _ in 0..3 {
        let r = auth_from(&api, "/auth/login", bot, owner, "guess-password").await;
        assert_eq!(r.status, 401);
    }
    let r = auth_from(&api, "/auth/login", bot, owner, "guess-password").await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    // ... also when it writes a fake address in front (the right-most untrusted hop counts).
    let r = auth_from(
        &api,
        "/auth/login",
        &format!("192.0.2.1, {bot}"),
        owner,
        "guess-password",
    )
    .await;
    assert_eq!(r.status, 429);
    // ... but not the owner, from their own address.
    let r = auth_from(
        &api,
        "/auth/login",
        "198.51.100.10",
        owner,
        "owner-password",
    )
    .await;
    assert_eq!(
        r.status, 200,
        "the owner is locked out by someone else's guesses"
    );

    // Registrations are limited per client.
    for i in 0..3 {
        let r = auth_from(
            &api,
            "/auth/register",
            bot,
            &format!("bot{i}@example.com"),
            "bot-password",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = auth_from(
        &api,
        "/auth/register",
        bot,
        "bot9@example.com",
        "bot-password",
    )
    .await;
    assert_eq!(r.status, 429, "the 4th registration from one client");
    assert!(r.headers.contains_key("retry-after"));
    let r = auth_from(
        &api,
        "/auth/register",
        "198.51.100.11",
        "human@example.com",
        "human-password",
    )
    .await;
    assert_eq!(r.status, 200, "another client registers");
}

/// The code of the `n`-th message the sink received (a verification email's text).
fn code_of(sink: &SmtpSink, n: usize) -> String {
    // Quoted-printable folds the long code: undo its soft line breaks.
    let text = sink.messages()[n]
        .text()
        .replace("=\r\n", "")
        .replace("=\n", "");
    text.lines()
        .map(str::trim)
        .find(|l| l.matches('.').count() == 2 && l.len() > 40 && !l.contains(' '))
        .unwrap_or_else(|| panic!("no code in:\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn admin_rights_need_a_verified_address() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    set(&mut env, "ADMIN_REQUIRES_VERIFIED_EMAIL", "true");
    let app = App::start(&env).await;
    let api = app.api.clone();
    // Someone registers the admin address first: no admin rights from it.
    let token = api.token("Admin@Example.com", "squatter-password").await;
    let new_product = json!({"product_id": "p-x", "product_name": "X", "quantity": 1});
    let (s, b) = api
        .post("/products", Some(&token), new_product.clone())
        .await;
    assert_eq!(
        s, 403,
        "an unverified ADMIN_EMAILS address is not admin: {b}"
    );
    assert_eq!(api.get("/orders?all=true", Some(&token)).await.0, 403);

    // The verification email goes through the outbox to the address; whoever reads it is
    // the owner.
    let (s, b) = api
        .post("/auth/verify/request", Some(&token), json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await, 1);
    assert_eq!(sink.messages()[0].to, ["admin@example.com"]);
    let code = code_of(&sink, 0);
    let (s, b) = api
        .post("/auth/verify", None, json!({"code": "nonsense"}))
        .await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid_input")), "{b}");
    let (s, b) = api.post("/auth/verify", None, json!({"code": token})).await;
    assert_eq!(s, 422, "an access token is no verification code: {b}");
    // GET /orders needs a bearer token: a code in its place is refused (POST would be 405
    // whatever the token, proving nothing).
    let (s, b) = api.get("/orders", Some(&code)).await;
    assert_eq!(s, 401, "a verification code is no access token: {b}");
    let (s, b) = api.post("/auth/verify", None, json!({"code": code})).await;
    assert_eq!(s, 200, "{b}");
    // The same token now carries admin rights (the role is read at every request).
    let (s, b) = api.post("/products", Some(&token), new_product).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = api
        .post("/auth/verify/request", Some(&token), json!({}))
        .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (200, Some("email already verified"))
    );
    app.stop().await;
}

#[tokio::test]
async fn require_verified_email_gates_ordering_over_http() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    set(&mut env, "REQUIRE_VERIFIED_EMAIL", "true");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("buyer@example.com", "buyer-password").await;
    // Registration sent the code at once.
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await, 1);
    let order = json!({"product_id": "product-1"});
    let (s, b) = api.post("/orders/place", Some(&token), order.clone()).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{b}");
    assert!(b["detail"].as_str().unwrap().contains("verify"), "{b}");
    assert_eq!(
        sink.messages().len(),
        1,
        "no confirmation for a refused order"
    );
    let (s, _) = api
        .post("/auth/verify", None, json!({"code": code_of(&sink, 0)}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = api.post("/orders/place", Some(&token), order).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).await, 2);
    assert!(sink.messages()[1].text().contains("Demo Product"));
    app.stop().await;
}
