//! The `ccproxy` binary.
fn main() {}
