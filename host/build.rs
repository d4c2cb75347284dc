//! Exports the plugins' allocator table from the `ccproxy` executable (see
//! `src/allocator.rs`): plugins find it with `dlsym`, which only sees the
//! executable's dynamic symbols.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=ccproxy_host_allocator_v1");
    }
}
