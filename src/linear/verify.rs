//! Linear's webhook signature: `Linear-Signature` is the lowercase hex HMAC-SHA256 of the raw body
//! under the webhook secret, and the signed body's `webhookTimestamp` (Unix ms, a number) must be
//! within 60 s of now. Checked exactly as Linear's own `LinearWebhookClient` (`@linear/sdk`) checks
//! it: the hex compared as written, in constant time; the timestamp read only from a body whose
//! signature holds. `tests/linear_signing.rs` holds the two to the same answers.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// How far `webhookTimestamp` may be from now.
pub const MAX_SKEW_MS: f64 = 60_000.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("missing Linear-Signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("the signed body is not JSON")]
    NotJson,
    #[error("the signed body has no numeric webhookTimestamp")]
    NoTimestamp,
    #[error("webhookTimestamp is more than 60 s from now (replay?)")]
    Stale,
}

/// Checks a delivery; returns its body, parsed, when it is Linear's and fresh. `now_ms` is Unix ms.
pub fn verify(
    secret: &SecretString,
    signature: Option<&str>,
    body: &[u8],
    now_ms: i64,
) -> Result<Value, Refusal> {
    let signature = signature.ok_or(Refusal::MissingSignature)?;
    let expected = crate::signing::body_hmac(secret.expose_secret(), body);
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(Refusal::BadSignature);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| Refusal::NotJson)?;
    let ts = v
        .get("webhookTimestamp")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite())
        .ok_or(Refusal::NoTimestamp)?;
    if (now_ms as f64 - ts).abs() > MAX_SKEW_MS {
        return Err(Refusal::Stale);
    }
    Ok(v)
}

/// `Linear-Signature` for a body: for tests and local tools.
pub fn sign(secret: &str, body: &[u8]) -> String {
    crate::signing::body_hmac(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn secret() -> SecretString {
        "lin_wh_secret_0123456789".to_string().into()
    }

    fn body(ts: Value) -> Vec<u8> {
        serde_json::json!({ "type": "AgentSessionEvent", "action": "created", "webhookTimestamp": ts })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn fresh_and_signed_only() {
        let ok = body(NOW.into());
        let sig = sign("lin_wh_secret_0123456789", &ok);
        assert!(verify(&secret(), Some(&sig), &ok, NOW + 59_000).is_ok());
        assert_eq!(
            verify(&secret(), None, &ok, NOW),
            Err(Refusal::MissingSignature)
        );
        assert_eq!(
            verify(&secret(), Some(&sig.to_uppercase()), &ok, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret(), Some(&format!("sha256={sig}")), &ok, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret(), Some(&sig), &ok, NOW + 61_000),
            Err(Refusal::Stale)
        );
        for bad in [Value::Null, "1800000000000".into(), serde_json::json!({})] {
            let b = body(bad);
            let s = sign("lin_wh_secret_0123456789", &b);
            assert_eq!(
                verify(&secret(), Some(&s), &b, NOW),
                Err(Refusal::NoTimestamp)
            );
        }
        let junk = b"not json";
        let s = sign("lin_wh_secret_0123456789", junk);
        assert_eq!(
            verify(&secret(), Some(&s), junk, NOW),
            Err(Refusal::NotJson)
        );
        let mut tampered = ok.clone();
        tampered[5] ^= 1;
        assert_eq!(
            verify(&secret(), Some(&sig), &tampered, NOW),
            Err(Refusal::BadSignature)
        );
    }
}
