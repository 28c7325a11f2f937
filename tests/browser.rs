//! The playground in a real browser: runs the Node end-to-end test in `tests/e2e` (Debian's
//! chromium driven by playwright-core) against this build's `chime` binary.
//!
//! It needs `node`, `tests/e2e/node_modules` and `/usr/bin/chromium`; `bash tests/e2e/setup.sh`
//! installs them. Without them the test says what is missing and passes, unless
//! `CHIME_REQUIRE_BROWSER=1` is set (CI sets it): then a missing dependency fails it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn missing_dependencies(e2e: &Path) -> Vec<&'static str> {
    let mut missing = vec![];
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        missing.push("node");
    }
    if !e2e.join("node_modules").join("playwright-core").is_dir() {
        missing.push("tests/e2e/node_modules");
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(CHROMIUM);
    }
    missing
}

#[test]
fn playground_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests").join("e2e");
    let missing = missing_dependencies(&e2e);
    if !missing.is_empty() {
        let what = format!(
            "{} missing; run `bash tests/e2e/setup.sh`",
            missing.join(", ")
        );
        if std::env::var("CHIME_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("browser test cannot run (CHIME_REQUIRE_BROWSER=1): {what}");
        }
        // Straight to stderr: libtest captures eprintln!, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "browser test skipped: {what}");
        return;
    }

    // `node --test <dir>` differs between Node versions; naming the files works in all of them.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&e2e)
        .expect("tests/e2e is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.mjs"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in tests/e2e");

    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .args(&files)
        .current_dir(root)
        .env("CHIME_BIN", env!("CARGO_BIN_EXE_chime"))
        .env("CHROMIUM_PATH", CHROMIUM)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser end-to-end test failed ({}); its output is above, screenshots in target/e2e/",
        out.status
    );
}
