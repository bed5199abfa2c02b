//! The frame decoder on one WebSocket message (body: `tessera::fuzzing::decode_message`, docs/FUZZING.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::decode_message(data));
