//! Build script shared by the Lambda functions and the empty floor function (each names it as
//! `build = "../link_layout.rs"`): how their binaries are laid out on Linux.
//!
//! 1. Linked as position-dependent executables (`-no-pie`). A position-independent Rust executable
//!    carries ~24,000 relative relocations (vtables, static string tables) that the dynamic loader
//!    applies at every cold start, reading ~0.6 MB of relocation records and copying every page it
//!    patches. Linked at a fixed address there are none: init 1.97 → 1.69 ms and 0.7 MB less resident
//!    memory for answer-ingest (docs/performance.md). The price is no address randomisation for the
//!    executable's own image (libraries, heap and stack still move).
//! 2. In optimised builds, the code a cold start and an invocation run is placed together at the start
//!    of the text (the package's `hot_text.ld`, a linker script written by `scripts/hot-text` from
//!    callgrind runs of the benchmark; one per binary, so none pulls forward code only another runs;
//!    the functions that ran in the profiled builds by exact name first, then hash-free patterns that
//!    also reach other builds).
//!    The kernel maps a binary's code 64 KB at a time around each page touched, and the 1.3 MB that
//!    runs was spread over almost all of the 4 MB of text: 56 of 65 windows resident. Grouped, about
//!    26 are (answer-ingest's peak RSS 6.6 → 4.9 MB). The script only adds an output section in front
//!    of `.text` (`INSERT BEFORE`), so the default layout stays; a pattern that matches nothing is no
//!    error, so a stale list still links, grouping less.
//! 3. The same for the read-only data those runs read (the package's `hot_data.ld`, from valgrind's
//!    record of every load, named through a link map): string literals, vtables and tables of the
//!    code that runs sit among those of the code that does not, so the 170 KB that is read (two
//!    thirds of it merged strings) kept 0.85 MB resident; grouped, 0.36 MB. The script gathers them in
//!    `.rodata.hot` ahead of `.rodata`, and names an output section `.data.rel.ro` whose listed
//!    vtables come first: lld merges it with the default one, GNU ld places it right after it, and
//!    either way they stay inside the read-only-after-relocation segment. Anonymous data is named by
//!    a hash of its crate's symbols, which changes with `--target`: those patterns hold for the
//!    builds that were profiled (native and cargo-lambda's), the named ones for every build.
//! 4. In optimised builds, symbols are stripped at link (`--strip-all`; see `main` for why not the
//!    profile's `strip`).
//!
//! Why a build script and not `rustflags`: `-C relocation-model=static` in a config file also reaches
//! proc-macro libraries on native builds and breaks them, and a `-no-pie` link argument given to every
//! crate turns their `-shared` link into an executable. `rustc-link-arg-bins` reaches only this
//! package's binaries. These arguments are understood by every linker these builds use: cc with GNU ld
//! or rust-lld, and cargo-lambda's zig (which refuses `--symbol-ordering-file`, hence a linker script).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=../link_layout.rs");
    println!("cargo:rerun-if-changed=hot_text.ld");
    println!("cargo:rerun-if-changed=hot_data.ld");
    println!("cargo:rerun-if-env-changed=HANDOVER_PROFILING_BUILD");
    println!("cargo:rustc-check-cfg=cfg(handover_link_map)");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    // Debug builds are for tests and stepping through code: no point matching thousands of patterns.
    if std::env::var("OPT_LEVEL").as_deref() == Ok("0") {
        return;
    }
    // scripts/hot-text profiles a build that is the release build's code, with its symbols kept and
    // laid out without the current list (valgrind names only functions inside `.text`).
    if std::env::var_os("HANDOVER_PROFILING_BUILD").is_some() {
        // Where each input section landed: what turns the data addresses valgrind saw into names. On
        // the linker's standard output, because zig's linker (cargo-lambda) refuses `-Map`; rustc
        // passes that output on as a `linker_messages` warning, which each binary turns on under this
        // cfg, and scripts/hot-text takes the map from cargo's JSON messages.
        println!("cargo:rustc-link-arg-bins=-Wl,--print-map");
        println!("cargo:rustc-cfg=handover_link_map");
        return;
    }
    // Stripped here rather than by the profile's `strip`: that option is part of every crate's
    // compilation flags, so a profile without it compiles slightly different code (other inlining,
    // 28 KB more text), and the profiled functions would not be the ones deployed.
    println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // One script: zig's linker (cargo-lambda) keeps only the last `-T` it is given.
    let mut layout = String::new();
    for name in ["hot_text.ld", "hot_data.ld"] {
        let script = Path::new(&manifest_dir).join(name);
        match std::fs::read_to_string(&script) {
            Ok(text) => layout.push_str(&text),
            Err(_) => println!(
                "cargo:warning=no {}: the release binaries link without that grouping",
                script.display()
            ),
        }
    }
    if layout.is_empty() {
        return;
    }
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let script = Path::new(&out_dir).join("layout.ld");
    if let Err(err) = std::fs::write(&script, layout) {
        panic!("cannot write {}: {err}", script.display());
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
