//! The panel in a real browser: headless Chromium loads it from the running
//! stack, runs its script, and we read the resulting DOM, the console and a
//! screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use stack_tests::repository_root;
use telemetry_core::testing::city_names;

fn chromium(args: &[&str]) -> (String, String) {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // Lets the page's script run (and its first refresh happen)
            // before the DOM or the screenshot is taken.
            "--virtual-time-budget=20000",
        ])
        .args(args)
        .output()
        .expect("chromium is installed (Debian package `chromium`)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every message the page wrote to the console; the panel writes none, so
/// any is an error (a script error, a CSP violation, a failed fetch).
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .collect()
}

/// Loads the panel, checks cards, charts and console, saves a screenshot and
/// returns its path.
pub fn check_panel(panel_port: u16) -> PathBuf {
    let url = format!("http://127.0.0.1:{panel_port}/");
    let (dom, stderr) = chromium(&["--dump-dom", &url]);
    let errors = console_messages(&stderr);
    assert!(
        errors.is_empty(),
        "the panel logged to the console: {errors:#?}"
    );
    let cities = city_names();
    for city in &cities {
        assert!(
            dom.contains(&format!("<h3 class=\"card-title\">{city}</h3>")),
            "no card for {city} in the rendered page"
        );
    }
    assert!(
        dom.contains("class=\"weather-temp\"") && !dom.contains("Live weather is unavailable"),
        "live weather from the API stand-in is shown"
    );
    let charts = dom.matches("class=\"chart-svg\"").count();
    assert_eq!(charts, cities.len(), "one chart per city");
    assert!(
        dom.matches("<svg").count() >= cities.len(),
        "charts are SVG"
    );

    let directory = screenshot_directory();
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("panel.png");
    let _ = std::fs::remove_file(&path);
    let (_, stderr) = chromium(&[
        "--window-size=1280,2300",
        &format!("--screenshot={}", path.display()),
        &url,
    ]);
    let errors = console_messages(&stderr);
    assert!(
        errors.is_empty(),
        "the panel logged to the console: {errors:#?}"
    );
    let png = std::fs::read(&path).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot, {} bytes",
        png.len()
    );
    path
}

fn screenshot_directory() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"));
    Path::new(&target).join("screenshots")
}
