//! Build script of the Lambda binaries and the benchmark's empty function.

fn main() {
    // Linked at a fixed address: a position-independent Rust executable carries tens of thousands of
    // relative relocations that the dynamic loader applies at every cold start, which counts most at
    // a 128 MB Lambda's CPU share. The price is no address randomisation of the executable's own
    // image (libraries, heap and stack still move). In a build script because a `-no-pie` in
    // rustflags would also reach proc-macro libraries and break them.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
