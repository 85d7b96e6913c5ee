//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.

use aws_lc_rs::hmac;
use base64::Engine as _;
use inventory_core::WebhookSecret;

/// The `webhook-signature` header for a message: one `v1,<base64>` per secret that holds a
/// key, separated by spaces (several during a secret rotation).
pub fn sign(secrets: &[WebhookSecret], msg_id: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{msg_id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(WebhookSecret::key)
        .map(|key| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), signed.as_bytes());
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let a = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = WebhookSecret::generate();
        let both = sign(&[b.clone(), a.clone()], "m", 1, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&[b], "m", 1, "{}"));
        assert_eq!(parts[1], sign(&[a], "m", 1, "{}"));
    }
}
