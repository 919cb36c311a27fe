//! Fuzz target `escape`: see `sockets::invariants::check` for how the input
//! is read and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = sockets::invariants::check("escape", data) {
        panic!("{broken}");
    }
});
