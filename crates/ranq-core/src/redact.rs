//! Redaction of secrets in connection URLs, so that a password never reaches a log line or an
//! error message.

/// Replaces the password of `scheme://user:password@host/...` with `***`. URLs without a password
/// are returned unchanged; so is anything that does not look like a URL.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    let Some(colon) = userinfo.find(':') else { return url.to_owned() };
    format!("{}{}:***{}", &url[..authority_start], &userinfo[..colon], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://:hunter2@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact_url("postgres://app:s3cr@t@db/x?sslmode=require"), "postgres://app:***@db/x?sslmode=require");
    }

    #[test]
    fn urls_without_passwords_are_unchanged() {
        for url in ["redis://127.0.0.1:6379", "postgres://app@db/x", "sqlite://ranq-demo.db", "not a url"] {
            assert_eq!(redact_url(url), url);
        }
    }
}
