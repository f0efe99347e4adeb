//! Password redaction runs on every URL and error line ranq prints: it never panics, and the
//! password of a `scheme://user:password@host` URL is always replaced by `***`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (text, password) = input;
    let _ = ranq_core::redact_url(text);
    if password.len() >= 4 && password.bytes().all(|b| b.is_ascii_alphanumeric()) {
        let url = format!("redis://user:{password}@host:6379/0");
        assert_eq!(ranq_core::redact_url(&url), "redis://user:***@host:6379/0");
    }
});
