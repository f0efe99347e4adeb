//! The shipped `config/default.toml` documents every key with its built-in default: loading it
//! must change nothing.

use ranq_runtime::{Overrides, Settings};

#[test]
fn the_shipped_config_file_equals_the_built_in_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
    let from_file = Settings::load(Some(&path), &Overrides::default()).expect("config/default.toml loads");
    let mut defaults = Settings::default();
    // Environment variables of the machine running the tests apply to both alike.
    defaults.database_url.clone_from(&from_file.database_url);
    assert_eq!(from_file, defaults);
}
