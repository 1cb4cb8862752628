//! The `outpost` command line run against a test daemon's unix socket, and readers for what
//! it prints (tables and JSON).

use super::Daemon;
use serde_json::Value;
use std::process::{Command, Output};

/// Runs `outpost ARGS` against `d`.
pub fn outpost(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .env("OUTPOST_SOCKET", d.socket())
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a command that succeeded.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `outpost -f json ARGS`, parsed.
pub fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["-f", "json"];
    all.extend_from_slice(args);
    let out = ok(&outpost(d, &all));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The one line on stderr of a command that failed (and printed nothing on stdout).
pub fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(o.stdout.is_empty());
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// The value of `field` in a Field/Value table (all its lines, joined with `\n`).
pub fn row(table: &str, field: &str) -> String {
    let mut lines = table.lines().skip_while(|l| cell(l, 1) != Some(field));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {field} in\n{table}"));
    let mut value = vec![cell(first, 2).unwrap_or_default()];
    // A multi-line value continues on rows whose Field is empty.
    value.extend(
        lines
            .take_while(|l| cell(l, 1) == Some(""))
            .map(|l| cell(l, 2).unwrap_or_default()),
    );
    value.join("\n")
}

/// Cell `n` of a table line (`|`-separated; cell 0 is what precedes the first bar).
pub fn cell(line: &str, n: usize) -> Option<&str> {
    line.split('|').nth(n).map(str::trim)
}
