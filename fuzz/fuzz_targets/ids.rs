//! Group ids and limits as they arrive in URLs and on the command line: any text parses or is
//! refused, never panics; what parses prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    if let Ok(group) = ranq_core::parse_group_id(raw) {
        assert_eq!(ranq_core::parse_group_id(&group.to_string()).ok(), Some(group));
    }
    if let Ok(limit) = ranq_core::parse_limit(Some(raw)) {
        assert!((1..=ranq_core::TOP_N).contains(&limit), "{limit}");
    }
});
