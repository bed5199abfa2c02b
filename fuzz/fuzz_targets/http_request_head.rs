//! The HTTP request head before a WebSocket upgrade, `/metrics` or `/healthz` (body:
//! `tessera::fuzzing::http_request_head`, docs/FUZZING.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::http_request_head(data));
