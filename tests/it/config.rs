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
