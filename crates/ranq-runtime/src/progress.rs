//! Progress bars for long work (seeding, refreshing, benchmark phases), all of one style.
//! indicatif draws them on a terminal and stays silent elsewhere, so logs and pipes get no
//! control characters.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `total` things called `unit`, labelled `what`: position, rate and time left.
pub fn bar(what: &str, total: u64, unit: &str) -> ProgressBar {
    let template = format!("{what} {{bar:30}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    ProgressBar::new(total)
        .with_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()))
}

/// A spinner for work of unknown length, ticking on its own.
pub fn spinner(message: String) -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    spinner
}
