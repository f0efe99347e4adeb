//! Snapshot JSON as read back from Redis (possibly corrupt): decoding never panics, and what
//! decodes encodes to JSON that decodes to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ranq_core::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        let again: Snapshot = serde_json::from_str(&snapshot.to_json()).unwrap();
        assert_eq!(again, snapshot);
    }
});
