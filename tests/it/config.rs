//! The shipped `config/default.toml` documents every key with its built-in default: loading it
//! must change nothing.

use ranq_runtime::{Overrides, Settings};

#[test]
fn the_shipped_config_file_equals_the_built_in_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
    let from_file = Settings::load(Some(&path), &Overrides::default()).expect("config/default.toml loads");
    // An empty file: the built-in defaults under the same environment variables as the above.
    let empty = std::env::temp_dir().join(format!("ranq-empty-{}.toml", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let defaults = Settings::load(Some(&empty), &Overrides::default()).expect("an empty file loads");
    std::fs::remove_file(&empty).unwrap();
    assert_eq!(from_file, defaults);
}

/// `ranq config show` lists every setting; each must be documented in the shipped file, under
/// its section, as `key = …` or (for optional settings) `# key = …`.
#[test]
fn the_shipped_config_file_documents_every_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
        } else if let Some((key, _)) = line.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                documented.insert(format!("{section}{key}"));
            }
        }
    }
    let empty = std::env::temp_dir().join(format!("ranq-empty-keys-{}.toml", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let all = Settings::explain(Some(&empty), &Overrides::default()).expect("explains");
    std::fs::remove_file(&empty).unwrap();
    let undocumented: Vec<&str> = all.iter().map(|e| e.key.as_str()).filter(|k| !documented.contains(*k)).collect();
    assert!(undocumented.is_empty(), "not in config/default.toml: {undocumented:?}");
}
