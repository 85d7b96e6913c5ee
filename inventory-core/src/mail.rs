//! Rendering the order confirmation, and the mailers that need no server.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use lettre::message::MultiPart;
use tokio::sync::watch;

pub use lettre::message::Mailbox;

use crate::domain::Notification;
use crate::error::MailError;
use crate::ports::{Mailer, OutgoingEmail};

/// Renders the confirmation email of a notification with the default
/// [`Templates`](crate::templates::Templates): product name, quantity and order id in a
/// plain-text and an (escaped) HTML part. The `Message-ID` derives from the notification id.
pub fn render_confirmation(n: &Notification) -> OutgoingEmail {
    crate::templates::Templates::default()
        .render(n)
        // The default templates use only variables every notification has, and were rendered
        // when loaded: this cannot fail.
        .expect("the default templates render every notification")
}

/// Builds the MIME message (multipart/alternative, `Date`, stable `Message-ID`).
/// A message that cannot be built is a permanent error: retrying would not help.
pub fn to_mime(email: &OutgoingEmail, from: &Mailbox) -> Result<lettre::Message, MailError> {
    let to: lettre::Address = email
        .to
        .as_str()
        .parse()
        .map_err(|e| MailError::Permanent(format!("invalid recipient: {e}")))?;
    lettre::Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| MailError::Permanent(format!("cannot build message: {e}")))
}

/// The default sender when none is configured.
pub fn default_from() -> Mailbox {
    "Inventory <no-reply@inventory.local>"
        .parse()
        .expect("constant mailbox parses")
}

/// Keeps every message it is given, for tests; can be told to fail its first sends.
#[derive(Debug)]
pub struct RecordingMailer {
    sent: Mutex<Vec<OutgoingEmail>>,
    /// Planned failures, the next one last.
    failures: Mutex<Vec<MailError>>,
    attempts: Mutex<u64>,
    count: watch::Sender<usize>,
}

impl Default for RecordingMailer {
    fn default() -> Self {
        Self::failing_with(Vec::new())
    }
}

impl RecordingMailer {
    /// A mailer that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mailer whose first sends fail with these errors, in order, then succeed.
    pub fn failing_with(failures: Vec<MailError>) -> Self {
        let mut failures = failures;
        failures.reverse();
        RecordingMailer {
            sent: Mutex::new(Vec::new()),
            failures: Mutex::new(failures),
            attempts: Mutex::new(0),
            count: watch::channel(0).0,
        }
    }

    /// A mailer whose first `n` sends fail transiently.
    pub fn failing_first(n: usize) -> Self {
        Self::failing_with(vec![MailError::Transient("planned failure".into()); n])
    }

    /// The messages accepted so far.
    pub fn deliveries(&self) -> Vec<OutgoingEmail> {
        self.sent.lock().expect("mailer lock").clone()
    }

    /// Sends attempted so far, failed ones included.
    pub fn attempts(&self) -> u64 {
        *self.attempts.lock().expect("mailer lock")
    }

    /// Waits until at least `n` messages were accepted.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.subscribe();
        // The sender lives in self, so this cannot fail while self is borrowed.
        let _ = rx.wait_for(|count| *count >= n).await;
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        *self.attempts.lock().expect("mailer lock") += 1;
        if let Some(err) = self.failures.lock().expect("mailer lock").pop() {
            return Err(err);
        }
        let count = {
            let mut sent = self.sent.lock().expect("mailer lock");
            sent.push(email.clone());
            sent.len()
        };
        self.count.send_replace(count);
        Ok(())
    }
}

/// Logs each message (recipient, subject, id) instead of sending it: `SMTP_MODE=mock`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        tracing::info!(
            to = %email.to,
            subject = %email.subject,
            message_id = %email.message_id,
            "mock mailer: email not sent (SMTP_MODE=mock)"
        );
        Ok(())
    }
}

/// Writes each message as an `.eml` file (named after its `Message-ID`, so a redelivery
/// overwrites rather than duplicates) into a folder. Any mail client opens these files.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    /// A mailer writing into `dir` (created if missing) with this sender.
    pub fn new(dir: impl Into<PathBuf>, from: Mailbox) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FileMailer { dir, from })
    }

    /// The folder written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a message goes to.
    pub fn path_for(&self, email: &OutgoingEmail) -> PathBuf {
        let name: String = email
            .message_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.eml"))
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = to_mime(email, &self.from)?;
        let path = self.path_for(email);
        let tmp = path.with_extension("eml.tmp");
        let io =
            |e: std::io::Error| MailError::Transient(format!("writing {}: {e}", path.display()));
        tokio::fs::write(&tmp, message.formatted())
            .await
            .map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }
}
