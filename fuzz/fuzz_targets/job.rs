//! Queue payloads: any bytes decode to a refresh job, a malformed job (for the dead letter), or an
//! error — never a panic — and a malformed job's description stays one bounded line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ranq_core::Incoming;

fuzz_target!(|data: &[u8]| {
    if let Ok(incoming) = serde_json::from_slice::<Incoming>(data) {
        match incoming.into_job() {
            Ok(job) => {
                let again: Incoming = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
                assert_eq!(again.into_job(), Ok(job));
            }
            Err(why) => assert!(why.len() < 400, "{} bytes", why.len()),
        }
    }
});
