//! The direction of the house: the core never names a platform, and a connector never names
//! another one, except through the exceptions listed here on purpose.
//!
//! It reads `src/` as text: every `crate::x` path in a module of the core, and every `crate::y`
//! path in a connector. The wiring (`app.rs`, `main.rs`, `lib.rs`) is the one place that knows
//! every connector.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Platform connectors: top-level folders of `src/`, today and planned.
const CONNECTORS: &[&str] = &["slack", "local", "linear", "ide", "github"];
/// Modules that wire connectors into the core.
const WIRING: &[&str] = &["app", "main", "lib"];
/// Deliberate exceptions: (connector, the connector module path it may use, why).
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "local",
        "slack::blocks",
        "the playground imitates Slack and shows the same Block Kit",
    ),
    (
        "local",
        "slack::reporter",
        "the playground's rows are Slack's ops, written by Slack's thread reporter",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::a::b…` path in `text`, outside comments, as `a::b…`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = vec![];
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let path: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_string());
            rest = tail;
        }
    }
    out
}

/// The violations in the tree under `src`.
fn violations(src: &Path) -> BTreeSet<String> {
    let mut files = vec![];
    rust_files(src, &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let module = module_of(src, &file);
        if WIRING.contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for path in crate_paths(&text) {
            let target = path.split("::").next().unwrap_or("");
            if target == module || !CONNECTORS.contains(&target) {
                continue;
            }
            let rel = file.strip_prefix(src).unwrap().display();
            if !CONNECTORS.contains(&module.as_str()) {
                found.insert(format!(
                    "core module `{module}` ({rel}) uses connector `{path}`"
                ));
            } else if !EXCEPTIONS
                .iter()
                .any(|(from, to, _)| *from == module && path.starts_with(to))
            {
                found.insert(format!(
                    "connector `{module}` ({rel}) uses another connector: `{path}`"
                ));
            }
        }
    }
    found
}

#[test]
fn the_core_never_names_a_connector() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "the direction of the house is broken:\n{}",
        found.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The check itself can fail: a core module that names Slack, and a connector that names
/// another outside the exceptions, are both caught.
#[test]
fn the_check_catches_a_core_module_naming_slack() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("session")).unwrap();
    std::fs::create_dir_all(src.join("local")).unwrap();
    std::fs::create_dir_all(src.join("slack")).unwrap();
    std::fs::write(
        src.join("session/turns.rs"),
        "use crate::slack::people::SlackPeople;\n// crate::local in a comment is fine\n",
    )
    .unwrap();
    std::fs::write(
        src.join("local/http.rs"),
        "use crate::slack::api::SlackApi;\nuse crate::slack::blocks::BlockKit;\n",
    )
    .unwrap();
    std::fs::write(src.join("app.rs"), "use crate::slack::SlackConnector;\n").unwrap();
    std::fs::write(src.join("slack/mod.rs"), "use crate::slack::api;\n").unwrap();
    let found: Vec<String> = violations(src).into_iter().collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("connector `local`") && found[0].contains("slack::api"));
    assert!(found[1].contains("core module `session`"));
}
