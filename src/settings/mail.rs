//! Where mail goes (`SMTP_*`, `SMTP_MODE`) and how the dispatcher sends it (`DISPATCHER_*`).

use std::path::PathBuf;
use std::sync::Arc;

use inventory_core::{DispatcherConfig, FileMailer, LogMailer, Mailer};

use super::*;

/// Where confirmations go (`SMTP_MODE`, `SMTP_*`, `MAIL_DIR`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MailChoice {
    /// A real SMTP server (`SMTP_HOST` set).
    #[cfg(feature = "smtp")]
    Smtp(inventory_mail::SmtpConfig),
    /// Logged, not sent (`SMTP_MODE=mock`).
    Log,
    /// `.eml` files in a folder (`MAIL_DIR`, default `./outbox`), from `SMTP_FROM`: the
    /// embedded default, no server needed.
    Files {
        /// The folder.
        dir: PathBuf,
        /// The sender.
        from: inventory_core::mail::Mailbox,
    },
}

impl MailChoice {
    /// Builds the mailer (creating the `.eml` folder if that is the choice) and says in the
    /// log where email goes.
    pub fn build(&self) -> Result<Arc<dyn Mailer>> {
        Ok(match self {
            #[cfg(feature = "smtp")]
            MailChoice::Smtp(config) => {
                tracing::info!(host = %config.host, port = config.port, tls = ?config.tls, "mail: SMTP");
                Arc::new(
                    inventory_mail::SmtpMailer::new(config.clone())
                        .map_err(|e| SettingsError::new("SMTP_HOST", e.to_string()))?,
                )
            }
            MailChoice::Log => {
                tracing::warn!("mail: SMTP_MODE=mock, confirmations are logged and NOT sent");
                Arc::new(LogMailer)
            }
            MailChoice::Files { dir, from } => {
                let mailer = FileMailer::new(dir, from.clone()).map_err(|e| {
                    SettingsError::invalid("MAIL_DIR", format!("{}: {e}", dir.display()))
                })?;
                let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                tracing::warn!(dir = %shown.display(), "mail: no SMTP_HOST configured, confirmations are written as .eml files into this folder");
                Arc::new(mailer)
            }
        })
    }
}

pub(super) fn mail(vars: &Vars<'_>) -> Result<MailChoice> {
    let mode = vars.get("SMTP_MODE").map(|m| m.trim().to_ascii_lowercase());
    match mode.as_deref() {
        Some("mock") => return Ok(MailChoice::Log),
        Some("files") => {}
        Some("smtp") | None => {
            #[cfg(feature = "smtp")]
            if let Some(config) = inventory_mail::SmtpConfig::from_lookup(|k| vars.get(k))
                .map_err(|e| SettingsError::new("SMTP_HOST", e.to_string()))?
            {
                return Ok(MailChoice::Smtp(config));
            }
            #[cfg(not(feature = "smtp"))]
            if vars.get("SMTP_HOST").is_some() {
                return Err(SettingsError::new(
                    "SMTP_HOST",
                    "SMTP_HOST is set but this build has no SMTP support: enable the `smtp` \
                     feature, or unset it to write .eml files",
                ));
            }
            if mode.is_some() {
                return Err(SettingsError::invalid(
                    "SMTP_HOST",
                    "SMTP_MODE=smtp needs SMTP_HOST",
                ));
            }
        }
        Some(other) => {
            return Err(SettingsError::invalid(
                "SMTP_MODE",
                format!("{other:?} is not one of smtp, mock, files"),
            ));
        }
    }
    let from = match vars.get("SMTP_FROM") {
        Some(f) => f
            .trim()
            .parse()
            .map_err(|e| SettingsError::invalid("SMTP_FROM", e))?,
        None => inventory_core::mail::default_from(),
    };
    Ok(MailChoice::Files {
        dir: PathBuf::from(vars.get("MAIL_DIR").unwrap_or_else(|| "outbox".into())),
        from,
    })
}

pub(super) fn dispatcher(vars: &Vars<'_>) -> Result<DispatcherConfig> {
    let d = DispatcherConfig::default();
    Ok(DispatcherConfig {
        batch_size: vars.parse("DISPATCHER_BATCH_SIZE", d.batch_size)?,
        concurrency: vars.parse("DISPATCHER_CONCURRENCY", d.concurrency)?,
        max_attempts: vars.parse("DISPATCHER_MAX_ATTEMPTS", d.max_attempts)?,
        lease: vars.secs("DISPATCHER_LEASE_SECS", d.lease.as_secs())?,
        retry_base: vars.millis("DISPATCHER_RETRY_BASE_MS", d.retry_base)?,
        retry_max: vars.secs("DISPATCHER_RETRY_MAX_SECS", d.retry_max.as_secs())?,
        sweep_interval: vars.millis("DISPATCHER_SWEEP_MS", d.sweep_interval)?,
        ..d
    })
}
