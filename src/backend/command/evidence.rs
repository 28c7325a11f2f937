//! Evidence, not claims: the commands an agent ran (from its own Codex or Claude transcript), with
//! how each ended, the failing tests its output names and the tail of that output. A milestone
//! carries each one as it happens; the turn's result lists the checks (tests, builds, linters)
//! with their last outcome, so a reviewer can verify instead of trusting the summary.

use super::protocol::tail_chars;
use crate::backend::Check;
use regex::Regex;
use std::sync::LazyLock;

/// At most this many checks are listed with a result.
const MAX_CHECKS: usize = 8;
/// At most this many failing tests are named per command.
const MAX_FAILING: usize = 5;
/// The output's tail shown with a milestone, in lines and characters.
const TAIL_LINES: usize = 10;
const TAIL_CHARS: usize = 600;

/// One command the agent ran, as its transcript tells it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ran {
    pub command: String,
    /// Its exit status, when the transcript gives one (Codex does; Claude says only failed or not).
    pub exit_code: Option<i64>,
    pub failed: bool,
    pub output: String,
}

/// Commands that check the work: tests, builds, type checks, linters and formatters.
static CHECK_COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(test|tests|build|check|clippy|fmt|lint|vet|tsc|pytest|jest|vitest|mypy|ruff|eslint|rspec|make|ctest|gradle|mvn)\b",
    )
    .expect("valid pattern")
});

/// Failing test names in common runners' output: cargo, pytest, go, jest.
static FAILING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?m)^(?:test (\S+) \.\.\. FAILED\s*$|FAILED (\S+?)(?: - .*)?$|--- FAIL: (\S+)|\s*✕ (.{1,120}?)(?: \(\d+ m?s\))?$)",
    )
    .expect("valid pattern")
});

impl Ran {
    fn failing_tests(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in FAILING.captures_iter(&self.output) {
            let Some(name) = c.iter().skip(1).flatten().next() else {
                continue;
            };
            let name = crate::templates::one_line(name.as_str(), 120);
            if !out.contains(&name) {
                out.push(name);
            }
            if out.len() == MAX_FAILING {
                break;
            }
        }
        out
    }

    pub fn check(&self) -> Check {
        Check {
            command: crate::templates::one_line(&self.command, 200),
            exit_code: self.exit_code,
            failed: self.failed || self.exit_code.is_some_and(|c| c != 0),
            failing: self.failing_tests(),
        }
    }

    /// The milestone for this command: what ran, how it ended, and the tail of its output.
    pub fn milestone(&self) -> String {
        let mut text = format!("Ran {}", self.check().line());
        let lines: Vec<&str> = self.output.trim_end().lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        let tail = tail_chars(&tail, TAIL_CHARS).replace("```", "ʼʼʼ");
        if !tail.trim().is_empty() {
            text.push_str(&format!("\n```\n{tail}\n```"));
        }
        text
    }
}

/// The checks among `ran`, each with the outcome of its last run, in the order first run.
pub(super) fn checks(ran: &[Ran]) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for r in ran.iter().filter(|r| CHECK_COMMAND.is_match(&r.command)) {
        let c = r.check();
        match out.iter_mut().find(|o| o.command == c.command) {
            Some(o) => *o = c,
            None => out.push(c),
        }
    }
    let skip = out.len().saturating_sub(MAX_CHECKS);
    out.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(command: &str, exit: Option<i64>, output: &str) -> Ran {
        Ran {
            command: command.into(),
            exit_code: exit,
            failed: exit.is_some_and(|c| c != 0),
            output: output.into(),
        }
    }

    #[test]
    fn failing_tests_of_common_runners() {
        let cargo = "running 2 tests\ntest tests::adds ... FAILED\ntest tests::subs ... ok\n\nfailures:\n\n---- tests::adds stdout ----\n";
        assert_eq!(
            ran("cargo test", Some(101), cargo).failing_tests(),
            ["tests::adds"]
        );
        let pytest = "FAILED tests/test_api.py::test_retry - AssertionError: 2 != 3\n";
        assert_eq!(
            ran("pytest", Some(1), pytest).failing_tests(),
            ["tests/test_api.py::test_retry"]
        );
        let go = "--- FAIL: TestRetry (0.00s)\n";
        assert_eq!(
            ran("go test ./...", Some(1), go).failing_tests(),
            ["TestRetry"]
        );
        let jest = "  ✕ retries twice (5 ms)\n";
        assert_eq!(
            ran("npx jest", Some(1), jest).failing_tests(),
            ["retries twice"]
        );
        let many: String = (0..20).map(|i| format!("test t{i} ... FAILED\n")).collect();
        assert_eq!(
            ran("cargo test", Some(101), &many).failing_tests().len(),
            MAX_FAILING
        );
    }

    #[test]
    fn milestones_and_checks() {
        let out = "test tests::adds ... FAILED\n```\nrm -rf /\n```\n";
        let m = ran("cargo test", Some(101), out).milestone();
        assert!(
            m.starts_with("Ran `cargo test`: exit 101, failing: tests::adds"),
            "{m}"
        );
        assert!(
            !m[3..].contains("```\nrm") || m.matches("```").count() == 2,
            "{m}"
        );
        let list = checks(&[
            ran("ls", Some(0), ""),
            ran("cargo test", Some(101), out),
            ran("cargo clippy", Some(0), ""),
            ran("cargo test", Some(0), "test tests::adds ... ok"),
        ]);
        let lines: Vec<String> = list.iter().map(Check::line).collect();
        assert_eq!(lines, ["`cargo test`: exit 0", "`cargo clippy`: exit 0"]);
    }
}
