#![no_main]

#[path = "../shared/entry.rs"]
mod entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry::trial(data));
