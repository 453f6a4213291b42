//! Macro misuse fails at compile time with a span on the offending token.
//! Each `tests/ui/*.rs` is one misuse; its `.stderr` pins the message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
