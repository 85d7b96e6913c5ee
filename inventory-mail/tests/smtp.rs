//! The SMTP mailer against a real SMTP server over TCP on loopback.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use inventory_core::*;
use inventory_mail::testing::SmtpSink;
use inventory_mail::{SmtpConfig, SmtpMailer, TlsMode};

const WAIT: Duration = Duration::from_secs(10);

fn notification(recipient: &str, product_name: &str) -> Notification {
    Notification {
        id: uuid::Uuid::now_v7(),
        recipient: Email::parse(recipient).unwrap(),
        message: Message::OrderConfirmation {
            order_id: uuid::Uuid::now_v7(),
            lines: vec![ConfirmedLine {
                product_id: ProductId::new("product-1").unwrap(),
                product_name: product_name.into(),
                quantity: Quantity::new(3).unwrap(),
            }],
        },
        status: NotificationStatus::Pending,
        attempts: 1,
        next_attempt_at: Utc::now(),
        lease_owner: None,
        lease_until: None,
        last_error: None,
        created_at: Utc::now(),
        sent_at: None,
    }
}

fn mailer_for(sink: &SmtpSink) -> SmtpMailer {
    let from = "Shop <shop@example.com>".parse().unwrap();
    SmtpMailer::new(SmtpConfig::new("127.0.0.1", sink.addr().port()).with_from(from)).unwrap()
}

#[tokio::test]
async fn delivers_the_confirmation_with_its_headers_and_parts() {
    let sink = SmtpSink::start().unwrap();
    let mailer = mailer_for(&sink);
    let n = notification("Buyer@Example.com", "Tea & <Cups>");
    let email = render_confirmation(&n);
    mailer.send(&email).await.unwrap();
    mailer.send(&email).await.unwrap(); // a redelivery
    assert_eq!(sink.wait_for(2, WAIT).await, 2);
    let got = sink.messages();
    let first = &got[0];
    assert_eq!(first.to, ["buyer@example.com"]);
    assert_eq!(first.from, "shop@example.com");
    assert_eq!(first.header("To").as_deref(), Some("buyer@example.com"));
    assert_eq!(
        first.header("From").as_deref(),
        Some("Shop <shop@example.com>")
    );
    assert_eq!(
        first.header("Subject").as_deref(),
        Some("Order confirmed: Tea & <Cups>")
    );
    assert!(first.header("Date").is_some());
    let message_id = format!("<{}@inventory-kit>", n.id);
    assert_eq!(
        first.header("Message-ID").as_deref(),
        Some(message_id.as_str())
    );
    assert_eq!(
        got[1].header("Message-ID"),
        first.header("Message-ID"),
        "stable across redelivery"
    );
    let text = first.text();
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("text/plain") && text.contains("text/html"));
    assert!(text.contains("Quantity: 3"));
    assert!(text.contains(&n.order_id().unwrap().to_string()));
    assert!(
        text.contains("Tea &amp; &lt;Cups&gt;"),
        "HTML part escaped: {text}"
    );
}

#[tokio::test]
async fn server_down_is_a_transient_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mailer = SmtpMailer::new(SmtpConfig::new("127.0.0.1", port)).unwrap();
    let err = mailer
        .send(&render_confirmation(&notification("a@example.com", "P")))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err:?}");
    assert!(mailer.check().await.is_err());
}

#[tokio::test]
async fn rejected_recipient_is_permanent_and_keeps_the_reply() {
    let sink = SmtpSink::start().unwrap();
    sink.reject("gone@example.com");
    let err = mailer_for(&sink)
        .send(&render_confirmation(&notification("gone@example.com", "P")))
        .await
        .unwrap_err();
    match err {
        MailError::Permanent(msg) => assert!(
            msg.contains("550") || msg.contains("mailbox unavailable"),
            "{msg}"
        ),
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn temporary_refusal_is_transient() {
    let sink = SmtpSink::start().unwrap();
    sink.set_tempfail(true);
    let mailer = mailer_for(&sink);
    let email = render_confirmation(&notification("later@example.com", "P"));
    let err = mailer.send(&email).await.unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err:?}");
    sink.set_tempfail(false);
    mailer
        .send(&email)
        .await
        .expect("accepted once the server recovers");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
}

#[tokio::test]
async fn starttls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let sink =
        SmtpSink::start_tls(cert_path.to_str().unwrap(), key_path.to_str().unwrap()).unwrap();
    let email = render_confirmation(&notification("tls@example.com", "Secure"));

    let mut config = SmtpConfig::new("localhost", sink.addr().port()).with_tls(TlsMode::StartTls);
    let untrusted = SmtpMailer::new(config.clone()).unwrap();
    let err = untrusted.send(&email).await.unwrap_err();
    assert!(
        matches!(err, MailError::Transient(_)),
        "unknown CA refused: {err:?}"
    );

    config.extra_root_pem = Some(cert.pem().into_bytes());
    SmtpMailer::new(config)
        .unwrap()
        .send(&email)
        .await
        .expect("sent over STARTTLS");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
    assert_eq!(sink.messages()[0].to, ["tls@example.com"]);
}

#[tokio::test]
async fn dispatcher_delivers_an_order_confirmation_end_to_end() {
    let sink = SmtpSink::start().unwrap();
    sink.reject("bounce@example.com");
    let store = Arc::new(MemoryStore::new());
    let p = NewProduct::new(ProductId::new("product-1").unwrap(), "Demo Product", 5).unwrap();
    store.create_product(&p, Utc::now()).await.unwrap();
    let order_for = |email: &str| {
        NewOrder::new(
            uuid::Uuid::now_v7(),
            Email::parse(email).unwrap(),
            Lines::one(p.id.clone(), Quantity::ONE),
        )
    };
    let good = store
        .place_order(&order_for("ann@example.com"))
        .await
        .unwrap()
        .order;
    let bad = store
        .place_order(&order_for("bounce@example.com"))
        .await
        .unwrap()
        .order;
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(mailer_for(&sink)),
        DispatcherConfig::default(),
    );
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!((report.sent, report.failed), (1, 1));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["ann@example.com"]);
    assert!(got[0].text().contains("Demo Product") && got[0].text().contains(&good.id.to_string()));
    assert_eq!(
        store.get_order(good.id).await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    let failed = store.notification_for_order(bad.id).await.unwrap().unwrap();
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert!(
        failed.last_error.unwrap().contains("550"),
        "server reply kept"
    );
}

#[test]
fn configuration_from_variables_and_urls() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(SmtpConfig::from_lookup(vars(&[])).unwrap().is_none());
    let c = SmtpConfig::from_lookup(vars(&[
        ("SMTP_HOST", "mail.example.com"),
        ("SMTP_PORT", "2525"),
        ("SMTP_USER", "api"),
        ("SMTP_PASSWORD", "hunter2-secret"),
        ("SMTP_FROM", "Shop <shop@example.com>"),
        ("SMTP_USE_TLS", "true"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.tls),
        ("mail.example.com", 2525, TlsMode::StartTls)
    );
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug hides the password"
    );
    let bad_port =
        SmtpConfig::from_lookup(vars(&[("SMTP_HOST", "h"), ("SMTP_PORT", "lots")])).unwrap_err();
    assert!(bad_port.to_string().contains("SMTP_PORT"));
    let bad_tls = SmtpConfig::from_lookup(vars(&[("SMTP_HOST", "h"), ("SMTP_USE_TLS", "maybe")]))
        .unwrap_err();
    assert!(bad_tls.to_string().contains("SMTP_USE_TLS"));
    let implicit = SmtpConfig::from_lookup(vars(&[("SMTP_HOST", "h"), ("SMTP_USE_TLS", "tls")]))
        .unwrap()
        .unwrap();
    assert_eq!(implicit.port, 465);

    let u = SmtpConfig::from_url("smtps://user:p%40ss@smtp.example.com").unwrap();
    assert_eq!(
        (u.port, u.tls, u.user.as_deref()),
        (465, TlsMode::Implicit, Some("user"))
    );
    assert!(!format!("{u:?}").contains("p@ss"));
    let plain = SmtpConfig::from_url("smtp://127.0.0.1:1025?tls=none").unwrap();
    assert_eq!((plain.port, plain.tls), (1025, TlsMode::None));
    assert!(SmtpConfig::from_url("http://x").is_err());
}

/// A mailer whose whole SMTP conversation is bounded by one second.
fn impatient(port: u16) -> SmtpMailer {
    let mut config = SmtpConfig::new("127.0.0.1", port);
    config.timeout = Duration::from_secs(1);
    SmtpMailer::new(config).unwrap()
}

/// A TCP server that accepts, optionally writes `greeting`, and then never says anything.
/// Returns its port and a counter of accepted connections.
async fn silent_server(greeting: &'static [u8]) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = socket.write_all(greeting).await;
            held.push(socket); // open, silent
        }
    });
    (port, accepted)
}

async fn assert_times_out(mailer: &SmtpMailer) {
    let email = render_confirmation(&notification("a@example.com", "Tea"));
    let result = tokio::time::timeout(Duration::from_secs(30), mailer.send(&email))
        .await
        .expect("the send must end by itself, bounded by SMTP_TIMEOUT_SECS");
    match result {
        Err(MailError::Transient(msg)) => {
            assert!(msg.contains("did not complete"), "{msg}")
        }
        other => panic!("a silent server must be a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_times_out() {
    let (port, accepted) = silent_server(b"").await;
    let mailer = impatient(port);
    assert_times_out(&mailer).await;
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // Again: the stuck connection is not reused, a new one is opened and times out too.
    assert_times_out(&mailer).await;
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_server_that_stalls_after_its_banner_times_out() {
    let (port, _) = silent_server(b"220 silent.example ESMTP\r\n").await;
    assert_times_out(&impatient(port)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_after_data_times_out_and_the_next_send_recovers() {
    let sink = SmtpSink::start().unwrap();
    let mailer = impatient(sink.addr().port());
    // A healthy first send puts a connection in the pool.
    let email = render_confirmation(&notification("a@example.com", "Tea"));
    mailer.send(&email).await.unwrap();
    sink.set_delay(Duration::from_secs(3));
    assert_times_out(&mailer).await;
    sink.set_delay(Duration::ZERO);
    let next = render_confirmation(&notification("b@example.com", "Cups"));
    mailer
        .send(&next)
        .await
        .expect("after a timeout the next send uses a fresh connection");
    assert!(
        sink.messages().iter().any(|m| m.to == ["b@example.com"]),
        "the message after the stall was delivered"
    );
}
