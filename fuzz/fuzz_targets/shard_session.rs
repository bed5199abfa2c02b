//! A client session against two sans-IO relay shards: SUBSCRIBE checks, filters, index, late matching, FETCH
//! (body: `tessera::fuzzing::shard_session`, docs/FUZZING.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(tessera::fuzzing::shard_session(data)));
