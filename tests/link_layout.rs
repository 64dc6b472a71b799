//! The hot-code linker scripts (`functions/<function>/hot_text.ld`, used by each function's release
//! link) parse with this machine's linker and move the functions they name, as the compiler emits them
//! (`.text.<symbol>`, and `.text.unlikely.<symbol>` for cold ones), into `.text.hot` ahead of the rest
//! of the code; the hot-data scripts (`hot_data.ld`) gather the read-only data they name, keeping
//! vtables inside the segment that is read-only after relocation. The release build itself is not part of the tests (minutes), so this links a small C
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
    script_named(function, "hot_text.ld")
}

fn script_named(function: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../functions")
        .join(function)
        .join(name)
}

/// Two symbols the script names, both tokio functions: the first it names exactly (the functions that
/// ran in a profiled build come first), the second through a pattern, with the hash glob filled in.
fn named_symbols(text: &str) -> (String, String) {
    let tokio_entries: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("*(.text."))
        .map(|rest| {
            let first = rest.split_whitespace().next().unwrap_or_default();
            first.trim_end_matches(')')
        })
        .filter(|entry| entry.starts_with("_ZN5tokio") && !entry.contains('$'))
        .collect();
    let exact = tokio_entries.iter().find(|entry| !entry.contains('*'));
    let pattern = tokio_entries.iter().find(|entry| entry.ends_with("17h*E*"));
    match (exact, pattern) {
        (Some(exact), Some(pattern)) => {
            let concrete = pattern.replacen("17h*E", "17h0123456789abcdefE", 1);
            let concrete = concrete.trim_end_matches('*').replace('*', "x");
            assert_ne!(exact, &concrete, "two different functions");
            (exact.to_string(), concrete)
        }
        _ => panic!("the script names no tokio function exactly, or none through a pattern"),
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

/// Writes `program` as `layout.c` in a fresh temporary directory of its own; returns the directory
/// and the source.
fn write_program(test: &str, function: &str, program: &str) -> (PathBuf, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("handover-{test}-{}-{function}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let source = dir.join("layout.c");
    std::fs::write(&source, program).expect("write");
    (dir, source)
}

/// Links `source` against `script` with the machine's cc and runs the result, which must exit with
/// `exit_code`; returns the binary.
fn link_and_run(
    source: &Path,
    script: &Path,
    flags: &[&str],
    exit_code: i32,
    why: &str,
) -> PathBuf {
    let binary = source.with_extension("");
    let linked = Command::new("cc")
        .args(flags)
        .arg("-no-pie")
        .arg(format!("-Wl,-T,{}", script.display()))
        .arg(source)
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
        Some(exit_code),
        "the program still runs: {why}"
    );
    binary
}

fn address_of(symbols: &[(u64, String)], name: &str) -> u64 {
    symbols
        .iter()
        .find(|(_, symbol)| symbol == name)
        .map(|(address, _)| *address)
        .unwrap_or_else(|| panic!("{name} not in the binary"))
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
    let (dir, source) = write_program(
        "link-layout",
        function,
        &format!(
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
    );
    let binary = link_and_run(
        &source,
        &script,
        &["-O2", "-ffunction-sections"],
        5,
        "1 * 3 + (1 + 1) + (1 - 1)",
    );

    let (hot_start, hot_end) = section_range(&binary, ".text.hot");
    let (text_start, _) = section_range(&binary, ".text");
    assert!(
        hot_end <= text_start,
        "{function}: .text.hot comes before .text"
    );
    let symbols = symbol_addresses(&binary);
    let address_of = |name: &str| address_of(&symbols, name);
    for named in [&hot, &hot_and_cold] {
        let address = address_of(named);
        assert!(
            (hot_start..hot_end).contains(&address),
            "{function}: {named} at {address:#x}, outside .text.hot {hot_start:#x}..{hot_end:#x}"
        );
    }
    assert!(
        address_of(&hot) < address_of(&hot_and_cold),
        "{function}: the functions named exactly come ahead of those a pattern reaches"
    );
    assert!(
        !(hot_start..hot_end).contains(&address_of("not_named")),
        "a function the script does not name stays in .text"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first two input-section patterns of the script's block for `output` (`.rodata.hot`, or the
/// `.data.rel.ro` it puts first), as concrete section names: hash globs filled in.
fn named_data_sections(text: &str, output: &str) -> (String, String) {
    let block = text
        .split(&format!("  {output} :"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {output} block"));
    let mut sections = block
        .lines()
        .take_while(|line| !line.starts_with('}'))
        .filter_map(|line| line.trim().strip_prefix("*(")?.strip_suffix(')'))
        .map(|pattern| {
            pattern
                .replacen("17h*E", "17h0123456789abcdefE", 1)
                .trim_end_matches('*')
                .replace('*', "x")
        });
    match (sections.next(), sections.next()) {
        (Some(first), Some(second)) => (first, second),
        _ => panic!("the {output} block names fewer than two sections"),
    }
}

fn relro_range(binary: &Path) -> (u64, u64) {
    let listing = Command::new("readelf")
        .arg("-lW")
        .arg(binary)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&listing.stdout);
    let fields: Vec<&str> = text
        .lines()
        .find(|line| line.trim_start().starts_with("GNU_RELRO"))
        .unwrap_or_else(|| panic!("no GNU_RELRO segment in:\n{text}"))
        .split_whitespace()
        .collect();
    let start = u64::from_str_radix(fields[2].trim_start_matches("0x"), 16).expect("address");
    let size = u64::from_str_radix(fields[5].trim_start_matches("0x"), 16).expect("size");
    (start, start + size)
}

#[test]
fn every_function_has_a_hot_data_script_that_groups_what_it_names_and_keeps_vtables_read_only() {
    for function in FUNCTIONS {
        groups_the_data_it_names(function);
    }
}

fn groups_the_data_it_names(function: &str) {
    let script = script_named(function, "hot_data.ld");
    let text =
        std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        text.contains("INSERT BEFORE .rodata;"),
        "{function}: augments the default layout"
    );
    let (rodata_first, rodata_second) = named_data_sections(&text, ".rodata.hot");
    let (relro_first, relro_second) = named_data_sections(&text, ".data.rel.ro");

    // In source order a section the script does not name sits between the two it names.
    let (dir, source) = write_program(
        "data-layout",
        function,
        &format!(
            r#"
            __attribute__((section("{rodata_first}"))) const char hot_first[16] = "first";
            __attribute__((section(".rodata.not_named"))) const char not_named[16] = "not named";
            __attribute__((section("{rodata_second}"))) const char hot_second[16] = "second";
            int one(void) {{ return 1; }}
            int two(void) {{ return 2; }}
            __attribute__((section("{relro_first}"))) int (*const table_first)(void) = one;
            __attribute__((section(".data.rel.ro.not_named"))) int (*const table_not_named)(void) = two;
            __attribute__((section("{relro_second}"))) int (*const table_second)(void) = two;
            int main(void) {{
                return hot_first[0] + not_named[0] + hot_second[0] == 'f' + 'n' + 's'
                    ? table_first() + table_not_named() + table_second() : 100;
            }}
            "#
        ),
    );
    // As functions/link_layout.rs links it: one script, the code's and the data's.
    let code_script =
        std::fs::read_to_string(script_named(function, "hot_text.ld")).expect("hot_text.ld");
    let layout = dir.join("layout.ld");
    std::fs::write(&layout, code_script + &text).expect("write");
    let binary = link_and_run(&source, &layout, &["-O2", "-fPIC"], 5, "1 + 2 + 2");

    let symbols = symbol_addresses(&binary);
    let address_of = |name: &str| address_of(&symbols, name);
    let (code_start, code_end) = section_range(&binary, ".text.hot");
    assert!(
        code_start < code_end,
        "{function}: the code's grouping holds beside the data's"
    );
    let (hot_start, hot_end) = section_range(&binary, ".rodata.hot");
    let (rodata_start, _) = section_range(&binary, ".rodata");
    assert!(
        hot_end <= rodata_start,
        "{function}: .rodata.hot comes before .rodata"
    );
    for named in ["hot_first", "hot_second"] {
        let address = address_of(named);
        assert!(
            (hot_start..hot_end).contains(&address),
            "{function}: {named} at {address:#x}, outside .rodata.hot {hot_start:#x}..{hot_end:#x}"
        );
    }
    assert!(!(hot_start..hot_end).contains(&address_of("not_named")));

    let (relro_start, relro_end) = relro_range(&binary);
    for table in ["table_first", "table_not_named", "table_second"] {
        let address = address_of(table);
        assert!(
            (relro_start..relro_end).contains(&address),
            "{function}: {table} at {address:#x} is writable: outside RELRO {relro_start:#x}..{relro_end:#x}"
        );
    }
    assert_eq!(
        address_of("table_second").abs_diff(address_of("table_first")),
        8,
        "{function}: the two named tables sit side by side, the unnamed one elsewhere"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
