//! Build script shared by the Lambda functions and the empty floor function (each names it as
//! `build = "../link_fixed_address.rs"`): links their binaries as position-dependent executables on
//! Linux.
//!
//! Why: a position-independent Rust executable carries ~24,000 relative relocations (vtables, static
//! string tables) that the dynamic loader applies at every cold start, reading ~0.6 MB of relocation
//! records and copying every page it patches. Linked at a fixed address there are none: init
//! 1.97 → 1.69 ms and 0.7 MB less resident memory for answer-ingest (docs/performance.md). The price is
//! no address randomisation for the executable's own image (libraries, heap and stack still move).
//!
//! Why a build script and not `rustflags`: `-C relocation-model=static` in a config file also reaches
//! proc-macro libraries on native builds and breaks them, and a `-no-pie` link argument given to every
//! crate turns their `-shared` link into an executable. `rustc-link-arg-bins` reaches only this
//! package's binaries, and `-no-pie` is understood by every linker driver these builds use (cc with
//! GNU ld or rust-lld, and cargo-lambda's zig).

fn main() {
    println!("cargo:rerun-if-changed=../link_fixed_address.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
