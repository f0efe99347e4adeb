//! Headless Chromium for the web board's end-to-end tests, driven over WebDriver: a private
//! `chromedriver` on a free port, one browser session with an empty profile, and no network but
//! loopback's (Chromium's background fetches are switched off; this machine refuses them).
//!
//! Found at `RANQ_TEST_CHROMEDRIVER` / `RANQ_TEST_CHROMIUM`, else `chromedriver` and `chromium` on
//! `PATH`. Missing, they fail the test with how to install them (`scripts/test` does); a browser
//! test is never skipped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::{eventually, free_port};

/// How long one WebDriver command may take before the test calls the browser stuck.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// One browser session and the driver behind it. On drop (a failed test included) the driver's
/// whole process group is killed — Chromium with it — and the profile removed.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("profile", &self.profile).finish_non_exhaustive()
    }
}

fn find(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is required for the browser tests: install Debian's chromium and chromium-driver \
                 (scripts/test does), or set {var}"
            )
        })
}

impl Browser {
    /// Starts a driver and a headless desktop browser with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::launch(width, height, None).await
    }

    /// Starts a headless browser that presents itself as a 390×844 phone (a real 390 px wide
    /// viewport, which a desktop window cannot be made as narrow as).
    pub async fn phone() -> Self {
        let metrics = json!({ "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "mobile": true } });
        Self::launch(390, 844, Some(metrics)).await
    }

    async fn launch(width: u32, height: u32, mobile_emulation: Option<Value>) -> Self {
        let driver_bin = find("RANQ_TEST_CHROMEDRIVER", "chromedriver");
        let chromium = find("RANQ_TEST_CHROMIUM", "chromium");
        let port = free_port();
        // A process group of its own, so that Chromium, the driver's child, goes with it.
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", driver_bin.display()));
        let profile = std::env::temp_dir().join(format!("ranq_t_chromium_{}_{port}", std::process::id()));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-quic", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            }
        });
        let mut capabilities = capabilities;
        if let Some(emulation) = mobile_emulation {
            capabilities["goog:chromeOptions"]["mobileEmulation"] = emulation;
        }
        let Value::Object(capabilities) = capabilities else { unreachable!("a JSON object") };
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(Duration::from_secs(30), "chromedriver starts a headless Chromium", || {
            let (capabilities, url) = (capabilities.clone(), url.clone());
            async move {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let mut builder = ClientBuilder::new(connector);
                builder.capabilities(capabilities);
                tokio::time::timeout(COMMAND_TIMEOUT, builder.connect(&url)).await.ok()?.ok()
            }
        })
        .await;
        Self { client, driver, profile }
    }

    /// Resizes the window (screenshots show the viewport only).
    pub async fn resize(&self, width: u32, height: u32) {
        tokio::time::timeout(COMMAND_TIMEOUT, self.client.set_window_size(width, height))
            .await
            .expect("the resize finishes")
            .expect("the window resizes");
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        tokio::time::timeout(COMMAND_TIMEOUT, self.client.goto(url))
            .await
            .unwrap_or_else(|_| panic!("{url} did not load within {COMMAND_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{url} did not load: {e}"));
    }

    /// The trimmed text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let read = async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            Some(element.text().await.ok()?.trim().to_owned())
        };
        tokio::time::timeout(COMMAND_TIMEOUT, read).await.ok()?
    }

    /// Waits until the element at `css` reads `expected`; panics with what it read instead.
    pub async fn wait_for_text(&self, css: &str, expected: &str, timeout: Duration) {
        let what = format!("{css} to read {expected:?}");
        eventually(timeout, &what, || async { (self.text(css).await.as_deref() == Some(expected)).then_some(()) })
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        tokio::time::timeout(COMMAND_TIMEOUT, self.client.execute(script, vec![]))
            .await
            .expect("the script finishes")
            .expect("the script runs")
    }

    /// Saves a PNG of the viewport to `path`, creating its folder.
    pub async fn screenshot(&self, path: &Path) {
        let png = tokio::time::timeout(COMMAND_TIMEOUT, self.client.screenshot())
            .await
            .expect("the screenshot finishes")
            .expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Ends the session politely; drop then stops the driver and whatever is left.
    pub async fn close(self) {
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.client.clone().close()).await;
    }
}
