#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| drop(tessera::proto::Codec::default().decode_message(&bytes::Bytes::copy_from_slice(data))));
