//! The hot-code linker scripts (`functions/<function>/hot_text.ld`, used by each function's release
//! link) parse with this machine's linker and move the functions they name, as the compiler emits them
//! (`.text.<symbol>`, and `.text.unlikely.<symbol>` for cold ones), into `.text.hot` ahead of the rest
//! of the code. The release build itself is not part of the tests (minutes), so this links a small C
//! program against each real script instead.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

const FUNCTIONS: [&str; 5] = [
    "answer-ingest",
    "presence-check",
    "prechat-complete",
    "handover",
    "empty",
];

fn script(function: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../functions")
        .join(function)
        .join("hot_text.ld")
}

/// Two symbols the script names: patterns of tokio functions with the hash glob filled in.
fn named_symbols(text: &str) -> (String, String) {
    let mut symbols = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("*(.text."))
        .map(|rest| {
            let first = rest.split_whitespace().next().unwrap_or_default();
            first.trim_end_matches(')')
        })
        .filter(|pattern| pattern.starts_with("_ZN5tokio") && !pattern.contains('$'))
        .map(|pattern| {
            let concrete = pattern.replacen("17h*E", "17h0123456789abcdefE", 1);
            assert!(concrete.ends_with('*'), "{pattern}");
            concrete.trim_end_matches('*').replace('*', "x")
        });
    match (symbols.next(), symbols.next()) {
        (Some(first), Some(second)) => (first, second),
        _ => panic!("the script names fewer than two tokio functions"),
    }
}

fn symbol_addresses(binary: &Path) -> Vec<(u64, String)> {
    let listing = Command::new("nm").arg(binary).output().expect("nm");
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _kind = fields.next()?;
            Some((address, fields.next()?.to_owned()))
        })
        .collect()
}

fn section_range(binary: &Path, name: &str) -> (u64, u64) {
    let listing = Command::new("readelf")
        .args(["-SW"])
        .arg(binary)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&listing.stdout);
    let line = text
        .lines()
        .find(|line| line.split_whitespace().any(|field| field == name))
        .unwrap_or_else(|| panic!("no section {name} in:\n{text}"));
    let fields: Vec<&str> = line
        .split(']')
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let start = u64::from_str_radix(fields[2], 16).expect("address");
    let size = u64::from_str_radix(fields[4], 16).expect("size");
    (start, start + size)
}

#[test]
fn every_function_has_a_hot_text_script_that_groups_what_it_names_ahead_of_the_rest() {
    for function in FUNCTIONS {
        groups_the_functions_it_names(function);
    }
}

fn groups_the_functions_it_names(function: &str) {
    let script = script(function);
    let text =
        std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        text.contains("INSERT BEFORE .text;"),
        "augments the default layout"
    );
    let patterns = text.matches("*(.text.").count();
    assert!(
        patterns > 100,
        "{function}: only {patterns} patterns: regenerate with scripts/hot-text"
    );

    let (hot, hot_and_cold) = named_symbols(&text);
    let dir = std::env::temp_dir().join(format!(
        "handover-link-layout-{}-{function}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let source = dir.join("layout.c");
    std::fs::write(
        &source,
        format!(
            r#"
            int not_named(int x) __attribute__((noinline));
            int not_named(int x) {{ return x * 3; }}
            int hot(int x) __asm__("{hot}") __attribute__((noinline));
            int hot(int x) {{ return x + 1; }}
            int hot_and_cold(int x) __asm__("{hot_and_cold}") __attribute__((noinline, cold));
            int hot_and_cold(int x) {{ return x - 1; }}
            int main(int argc, char **argv) {{ return not_named(argc) + hot(argc) + hot_and_cold(argc); }}
            "#
        ),
    )
    .expect("write");
    let binary = dir.join("layout");
    let linked = Command::new("cc")
        .args(["-O2", "-ffunction-sections", "-no-pie"])
        .arg(format!("-Wl,-T,{}", script.display()))
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .expect("cc");
    assert!(
        linked.status.success(),
        "the linker refused {}: {}",
        script.display(),
        String::from_utf8_lossy(&linked.stderr)
    );
    assert_eq!(
        Command::new(&binary).status().expect("run").code(),
        Some(5),
        "the program still runs: 1 * 3 + (1 + 1) + (1 - 1)"
    );

    let (hot_start, hot_end) = section_range(&binary, ".text.hot");
    let (text_start, _) = section_range(&binary, ".text");
    assert!(
        hot_end <= text_start,
        "{function}: .text.hot comes before .text"
    );
    let symbols = symbol_addresses(&binary);
    let address_of = |name: &str| {
        symbols
            .iter()
            .find(|(_, symbol)| symbol == name)
            .map(|(address, _)| *address)
            .unwrap_or_else(|| panic!("{name} not in the binary"))
    };
    for named in [&hot, &hot_and_cold] {
        let address = address_of(named);
        assert!(
            (hot_start..hot_end).contains(&address),
            "{function}: {named} at {address:#x}, outside .text.hot {hot_start:#x}..{hot_end:#x}"
        );
    }
    assert!(
        !(hot_start..hot_end).contains(&address_of("not_named")),
        "a function the script does not name stays in .text"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
