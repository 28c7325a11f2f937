//! The VS Code extension's protocol client (`integrations/vscode/src/client.ts`), compiled with
//! its own `npm run compile` and run under `node --test` against this build's `chime` binary.
//!
//! It needs `node` and `integrations/vscode/node_modules` (`bash tests/e2e/setup.sh` installs
//! them). Without them the test says what is missing and passes, unless `CHIME_REQUIRE_BROWSER=1`
//! is set (CI sets it; it covers every Node-based test): then it fails.

use std::io::Write;
use std::path::Path;
use std::process::Command;

#[test]
fn vscode_protocol_client_against_chime_serve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ext = root.join("integrations").join("vscode");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node || !ext.join("node_modules").join("typescript").is_dir() {
        let what =
            "node or integrations/vscode/node_modules missing; run `bash tests/e2e/setup.sh`";
        if std::env::var("CHIME_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("the VS Code client test cannot run (CHIME_REQUIRE_BROWSER=1): {what}");
        }
        let _ = writeln!(std::io::stderr(), "VS Code client test skipped: {what}");
        return;
    }
    let compile = Command::new("npm")
        .args(["run", "--silent", "compile"])
        .current_dir(&ext)
        .output()
        .expect("npm runs");
    assert!(
        compile.status.success(),
        "npm run compile failed:\n{}{}",
        String::from_utf8_lossy(&compile.stdout),
        String::from_utf8_lossy(&compile.stderr)
    );
    let out = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "test/client.test.mjs",
            "test/reports.test.mjs",
        ])
        .current_dir(&ext)
        .env("CHIME_BIN", env!("CARGO_BIN_EXE_chime"))
        .output()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the VS Code client test failed ({})",
        out.status
    );
}
