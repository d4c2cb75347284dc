//! Test library `not_a_plugin`: an ordinary C library with one function and no
//! ccproxy symbols. The host must refuse it with "not a ccproxy plugin".
//!
//! An exported `#[unsafe(no_mangle)]` function is unsafe code to the compiler,
//! which is why this crate allows `unsafe_code`; it contains nothing else.
#![allow(unsafe_code)]

/// Adds two numbers; here only so the library exports something.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
