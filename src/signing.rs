//! Request signing (v0), Slack's scheme: HMAC-SHA256 over `v0:{timestamp}:{raw body}`, checked in
//! constant time, with a replay window. Slack signs its requests so; Chime signs its `webhook`
//! backend's envelopes and checks that service's callbacks the same way.
//!
//! slack-morphism has a verifier too, but it takes the body as `&str` (so a signed non-UTF-8 body
//! could not be told apart from a forged one) and only checks the timestamp after the hash; this
//! one works on raw bytes and refuses stale requests first, and is small enough to read in full.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The replay window (Slack's).
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature or request timestamp header")]
    MissingHeaders,
    #[error("the request timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than {MAX_SKEW_SECS} s from now (replay?)")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
}

/// Checks a request against the signing secret. `now` is Unix seconds.
pub fn verify(
    secret: &SecretString,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(VerifyError::MissingHeaders);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::BadSignature)?;
    let mut mac = mac_for(secret, timestamp, body);
    // `verify_slice` compares in constant time.
    mac.update(&[]);
    mac.verify_slice(&expected)
        .map_err(|_| VerifyError::BadSignature)
}

/// Computes the signature header's value for a body.
pub fn sign(secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    let mac = mac_for(secret, timestamp, body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `hex_signature` is the hex HMAC-SHA256 of the raw `body` under `secret`, compared in
/// constant time: the scheme GitHub (after its `sha256=`) and Linear sign their webhooks with.
pub fn body_hmac_matches(secret: &SecretString, hex_signature: &str, body: &[u8]) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The hex HMAC-SHA256 of `body` under `secret` (see [`body_hmac_matches`]): for tests and tools.
pub fn body_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn mac_for(secret: &SecretString, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret() -> SecretString {
        "8f742231b10e8888abcd99yyyzzz85a5".to_string().into()
    }

    #[test]
    fn accepts_its_own_signature_and_refuses_tampering() {
        let body = b"token=x&team_id=T1";
        let sig = sign(&secret(), "1531420618", body);
        assert_eq!(
            verify(&secret(), Some(&sig), Some("1531420618"), body, 1531420618),
            Ok(())
        );
        assert_eq!(
            verify(
                &secret(),
                Some(&sig),
                Some("1531420618"),
                b"token=y&team_id=T1",
                1531420618
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(
                &secret(),
                Some(&sig),
                Some("1531420618"),
                body,
                1531420618 + 301
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&secret(), None, Some("1"), body, 1),
            Err(VerifyError::MissingHeaders)
        );
    }

    #[test]
    fn matches_slacks_documented_example() {
        // From Slack's "Verifying requests from Slack" page.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(
            verify(&secret(), Some(sig), Some("1531420618"), body, 1531420618),
            Ok(())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_or_passes(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            sig in ".{0,80}",
            ts in ".{0,20}",
        ) {
            let r = verify(&secret(), Some(&sig), Some(&ts), &body, 1_700_000_000);
            prop_assert!(r.is_err());
        }
    }
}
