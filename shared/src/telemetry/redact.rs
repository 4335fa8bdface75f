//! What a log line shipped to Port must never hold: the configured secrets (registered with
//! [`Redactor::hide`] once the settings are read) and anything shaped like a credential
//! whatever its source — a bearer or basic authorization, a JSON Web Token (Port's access
//! tokens, Microsoft Entra ID's), a password in a URL. Each is replaced by `[REDACTED]`, as the
//! Python integration masks the lines it sends (`full_hide`).
//!
//! Lines printed locally are not rewritten here: secrets are [`crate::config::Secret`]s there
//! and never print. Shipping is the stricter path because the text leaves the process.

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not searched for: a one-character "secret" would mask every
/// line (they are refused by Port and Azure DevOps anyway).
const SHORTEST_SECRET: usize = 4;

/// The configured secrets and the credential shapes.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// Adds secret values to mask (blank ones and very short ones are ignored). A personal
    /// access token is also masked in the form it travels in (`base64(":pat")` of basic auth).
    pub fn hide<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for secret in secrets {
            let secret = secret.as_ref().trim();
            if secret.chars().count() < SHORTEST_SECRET {
                continue;
            }
            for form in [secret.to_string(), base64(format!(":{secret}").as_bytes())] {
                if !self.secrets.contains(&form) {
                    self.secrets.push(form);
                }
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every secret and credential shape replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        let out = after_scheme(&out, "bearer ");
        let out = after_scheme(&out, "basic ");
        let out = jwts(&out);
        url_passwords(&out)
    }

    /// Every string in `value` redacted (keys kept).
    pub fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                let redacted = self.redact(s);
                if redacted != *s {
                    *s = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// A word after `Bearer `/`Basic ` that is a credential rather than prose ("basic
/// settings"): 8 characters or more, not all letters.
fn looks_like_credential(word: &str) -> bool {
    word.len() >= 8 && word != REDACTED && !word.chars().all(|c| c.is_ascii_alphabetic())
}

/// `Bearer xyz` / `Basic xyz` (any case): the credential after the scheme.
fn after_scheme(text: &str, scheme: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(scheme) {
        let start = at + found + scheme.len();
        out.push_str(&text[at..start]);
        let rest = &text[start..];
        let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if looks_like_credential(&rest[..end]) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[..end]);
        }
        at = start + end;
    }
    out.push_str(&text[at..]);
    out
}

/// JSON Web Tokens: `eyJ…` followed by two more dot-separated base64url parts.
fn jwts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = text[at..].find("eyJ") {
        let start = at + found;
        out.push_str(&text[at..start]);
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(rest.len());
        let candidate = &rest[..end];
        if candidate.split('.').filter(|p| !p.is_empty()).count() >= 3 {
            out.push_str(REDACTED);
        } else {
            out.push_str(candidate);
        }
        at = start + end;
    }
    out.push_str(&text[at..]);
    out
}

/// `scheme://user:password@host` → `scheme://user:[REDACTED]@host`.
fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = text[at..].find("://") {
        let authority_start = at + found + 3;
        out.push_str(&text[at..authority_start]);
        let rest = &text[authority_start..];
        let end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        match authority.rfind('@').and_then(|a| {
            authority[..a]
                .find(':')
                .map(|colon| (colon, a))
                .filter(|(colon, a)| colon + 1 < *a)
        }) {
            Some((colon, a)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[a..]);
            }
            None => out.push_str(authority),
        }
        at = authority_start + end;
    }
    out.push_str(&text[at..]);
    out
}

/// Standard base64 with padding (basic auth's encoding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        let mut r = Redactor::default();
        r.hide(["pat-0123456789", "port-client-secret", " ", "ab"]);
        r
    }

    #[test]
    fn configured_secrets_and_their_basic_auth_form_are_masked() {
        let r = redactor();
        assert_eq!(
            r.redact("token pat-0123456789 and port-client-secret"),
            "token [REDACTED] and [REDACTED]"
        );
        let basic = base64(b":pat-0123456789");
        assert!(!r.redact(&format!("header {basic}")).contains(&basic));
        // Short and blank values are not secrets worth masking everything for.
        assert_eq!(r.redact("ab cd"), "ab cd");
    }

    #[test]
    fn credential_shapes_are_masked_whatever_their_source() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("Authorization: Bearer abc.DEF-123_x/y= end"),
            "Authorization: Bearer [REDACTED] end"
        );
        assert_eq!(
            r.redact("authorization: basic OnBhdDEyMw=="),
            "authorization: basic [REDACTED]"
        );
        assert_eq!(
            r.redact("basic authentication failed"),
            "basic authentication failed"
        );
        assert_eq!(
            r.redact("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln, next"),
            "token=[REDACTED], next"
        );
        assert_eq!(
            r.redact("amqp://guest:hunter2@broker:5672/vhost"),
            "amqp://guest:[REDACTED]@broker:5672/vhost"
        );
        assert_eq!(
            r.redact("https://dev.azure.com/org and eyJnotatoken"),
            "https://dev.azure.com/org and eyJnotatoken"
        );
    }

    #[test]
    fn values_are_redacted_in_depth() {
        let r = redactor();
        let mut v = serde_json::json!({"a": ["x pat-0123456789"], "b": {"c": "port-client-secret"}, "n": 3});
        r.redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["x [REDACTED]"], "b": {"c": "[REDACTED]"}, "n": 3})
        );
    }

    #[test]
    fn base64_is_the_standard_one() {
        assert_eq!(base64(b":pat"), "OnBhdA==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
