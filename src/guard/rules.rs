//! The output guard's rule set, version [`RULES_VERSION`]. Each rule is a regex and an optional
//! check on what it matched. The order matters: a more specific rule (`sk-ant-`) runs before a
//! broader one (`sk-`), and what an earlier rule redacted is no longer there for a later one.
//! Documented in the README ("Output guard"); a change to any rule bumps the version.

/// Bumped whenever a rule is added, removed or changed.
pub const RULES_VERSION: u32 = 1;

/// One kind of secret.
pub struct Rule {
    /// The kind, as shown in `[redacted: KIND]`.
    pub kind: &'static str,
    pub pattern: &'static str,
    /// The capture group that is the secret (0: the whole match).
    pub group: usize,
    /// A check on the secret itself, for rules whose pattern alone would catch ordinary words.
    pub check: Option<fn(&str) -> bool>,
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / f64::from(n);
            -p * p.log2()
        })
        .sum()
}

/// A key body, not a word: letters and digits mixed, and not all one case.
fn looks_random(s: &str) -> bool {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let upper = s.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = s.bytes().filter(u8::is_ascii_lowercase).count();
    digits > 0 && upper + lower > 0 && entropy(s) >= 3.0
}

/// A credential after `Authorization:` or `Bearer`, not a word: it has a digit, or both cases.
fn credential_like(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        || (s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase()))
}

/// A value assigned to a secret-sounding name: long and random enough to be a credential, not a
/// setting (`MAX_KEY=100`, `PASSWORD=changeme` stays; `API_TOKEN=8f0c…` goes).
fn assigned_value(s: &str) -> bool {
    let s = s.trim_matches(['"', '\'']);
    s.len() >= 12 && entropy(s) >= 3.3 && s.bytes().any(|b| b.is_ascii_digit())
}

pub const RULES: &[Rule] = &[
    Rule {
        kind: "private_key",
        // A PEM block; or, cut before its end, the base64 lines (and headers) that follow it.
        pattern: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:(?s:.*?)-----END [A-Z0-9 ]*PRIVATE KEY-----|(?:\r?\n[A-Za-z0-9+/=:, -]+)+)",
        group: 0,
        check: None,
    },
    Rule {
        kind: "slack_token",
        pattern: r"\bxox[abposre]-[0-9A-Za-z-]{10,}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "slack_app_token",
        pattern: r"\bxapp-[0-9]+-[0-9A-Za-z-]{10,}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "github_token",
        pattern: r"\b(?:gh[pousr]_[0-9A-Za-z]{20,}|github_pat_[0-9A-Za-z_]{20,})",
        group: 0,
        check: None,
    },
    Rule {
        kind: "anthropic_key",
        pattern: r"\bsk-ant-[0-9A-Za-z_-]{20,}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "openai_key",
        pattern: r"\bsk-(?:proj-|svcacct-|admin-)?([0-9A-Za-z_-]{20,})",
        group: 0,
        check: Some(|m| looks_random(m.trim_start_matches("sk-"))),
    },
    Rule {
        kind: "stripe_key",
        pattern: r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}|\bwhsec_[0-9A-Za-z]{20,}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "aws_access_key_id",
        pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
        group: 0,
        check: None,
    },
    Rule {
        kind: "aws_secret_key",
        // Named as one, or (see `Guard::redact`) a 40-character key next to an access key id.
        pattern: r"(?i)(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\s\x22']*[:=][\s\x22']*([0-9A-Za-z/+=]{40})",
        group: 1,
        check: None,
    },
    Rule {
        kind: "google_api_key",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "jwt",
        pattern: r"\beyJ[0-9A-Za-z_-]{8,}\.eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}",
        group: 0,
        check: None,
    },
    Rule {
        kind: "authorization",
        pattern: r"(?i)(?:authorization[\x22']?\s*[:=]\s*[\x22']?(?:bearer|basic|token|bot)?\s*|\bbearer\s+)([0-9A-Za-z._~+/=-]{12,})",
        group: 1,
        check: Some(credential_like),
    },
    Rule {
        kind: "url_password",
        pattern: r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@<>|]*:([^\s/@<>|]+)@",
        group: 1,
        check: None,
    },
    Rule {
        kind: "assigned_secret",
        pattern: r"(?i)\b[A-Z0-9_]*(?:_TOKEN|_SECRET|_KEY|PASSWORD|PASSWD)[\x22']?\s*[:=]\s*([\x22']?[^\s\x22'<>|,;]{8,}[\x22']?)",
        group: 1,
        check: Some(assigned_value),
    },
];

/// An AWS secret access key without its name: 40 base64 characters.
pub const AWS_SECRET_BARE: &str = r"(?:^|[^0-9A-Za-z/+=])([0-9A-Za-z/+]{40})(?:$|[^0-9A-Za-z/+=])";
/// How far after an access key id a bare secret key counts as its pair, in bytes.
pub const AWS_PAIR_WINDOW: usize = 300;
