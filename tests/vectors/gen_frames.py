#!/usr/bin/env python3
"""Encoded-frame vectors for the native protocol v3 (docs/PROTOCOL.md §Frames).

Written from the byte layouts in docs/PROTOCOL.md with Python's `struct` (big-endian, `>`), sharing no code
with the Rust codec: `tests/vectors.rs` decodes every `hex` and compares the fields, then re-encodes the
fields and compares the bytes.

Field conventions in the JSON: byte strings are lowercase hex; a proof is an object of its fields
(`version`, `reserved`, `bucket`, `window_start`, `commit`, `fingerprint`, `ciphertext`); a filter is the hex
of its serialised bytes. Each message may name a `codec` (Bloom m/k) when it differs from the default.

Regenerate (deterministic; the output must not change):
    python3 tests/vectors/gen_frames.py > tests/vectors/frames.json
"""
import hashlib
import json
import struct

HELLO, HELLO_REPLY, PUBLISH, ACK = 0x01, 0x02, 0x10, 0x11
SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, CLAIM = 0x20, 0x21, 0x22, 0x23
DELIVER, FETCH, FETCH_REPLY, ERROR = 0x30, 0x31, 0x32, 0x7F
NAMES = {HELLO: "HELLO", HELLO_REPLY: "HELLO_REPLY", PUBLISH: "PUBLISH", ACK: "ACK", SUBSCRIBE: "SUBSCRIBE",
         SUBSCRIBED: "SUBSCRIBED", UNSUBSCRIBE: "UNSUBSCRIBE", CLAIM: "CLAIM", DELIVER: "DELIVER", FETCH: "FETCH",
         FETCH_REPLY: "FETCH_REPLY", ERROR: "ERROR"}

PROOF_LEN, CIPHERTEXT_LEN = 564, 512
DEFAULT_LIMITS = {
    "message_bytes_max": 1 << 20, "frames_per_message_max": 64, "proofs_per_batch_max": 1024,
    "entries_per_subscribe_max": 256, "filters_per_bucket_max": 4, "subscribers_per_connection_max": 64,
    "subscription_windows_ahead_max": 360, "connections_max": 65536, "send_queue_proofs_max": 8192,
}
# What a relay with the default configuration on one shard announces (protocol version 2).
DEFAULT_POLICY = {
    "shards": 1, "filter_fingerprints_max": 60, "clock_skew_s": 2, "slow_consumer_grace_ms": 5000,
    "hello_timeout_ms": 10000, "idle_timeout_ms": 0, "protocol_errors_max": 8,
}


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def frame(ftype: int, body: bytes) -> bytes:
    return struct.pack(">BI", ftype, len(body)) + body


def stream(seed: bytes, n: int) -> bytes:
    """n deterministic pseudo-random bytes (SHA-256 in counter mode), standing in for ciphertext."""
    out = b""
    i = 0
    while len(out) < n:
        out += sha256(seed + struct.pack(">I", i))
        i += 1
    return out[:n]


def make_proof(n: int, window_start: int, num_buckets: int = 64) -> dict:
    commit = sha256(b"tessera-frame-commit-" + str(n).encode())
    bucket = int.from_bytes(sha256(commit)[0:2], "big") % num_buckets
    fp = sha256(commit + struct.pack(">Q", window_start))[0:8]
    return {"version": 1, "reserved": 0, "bucket": bucket, "window_start": window_start, "commit": commit.hex(),
            "fingerprint": fp.hex(), "ciphertext": stream(b"ct" + commit, CIPHERTEXT_LEN).hex()}


def proof_bytes(p: dict) -> bytes:
    b = struct.pack(">BBHQ32s8s512s", p["version"], p["reserved"], p["bucket"], p["window_start"],
                    bytes.fromhex(p["commit"]), bytes.fromhex(p["fingerprint"]), bytes.fromhex(p["ciphertext"]))
    assert len(b) == PROOF_LEN
    return b


def batch(proofs: list) -> bytes:
    return struct.pack(">H", len(proofs)) + b"".join(proof_bytes(p) for p in proofs)


def bloom(items: list, m: int, k: int) -> bytes:
    out = bytearray(m // 8)
    for item in items:
        for i in range(k):
            j = int.from_bytes(sha256(item + struct.pack(">H", i))[0:4], "big") % m
            out[j // 8] |= 1 << (j % 8)
    return bytes(out)


# ---- one encoder per frame type: fields dict -> (type, body) ----

def hello(version, role, node_id):
    f = {"version": version, "role": role, "node_id": node_id.hex()}
    return HELLO, f, b"TSRA" + struct.pack(">HBB16s", version, role, 0, node_id)


def hello_reply(version, num_buckets, window_s, m_bits, k, retention_s, node_id, limits, policy, auth_nonce):
    f = {"version": version, "num_buckets": num_buckets, "window_s": window_s, "m_bits": m_bits, "k": k,
         "proof_len": PROOF_LEN, "ciphertext_len": CIPHERTEXT_LEN, "retention_s": retention_s,
         "node_id": node_id.hex(), "limits": limits, "policy": policy, "auth_nonce": auth_nonce.hex()}
    l = limits
    body = struct.pack(">HHIIBBIII16s", version, num_buckets, window_s, m_bits, k, 0, PROOF_LEN, CIPHERTEXT_LEN,
                       retention_s, node_id)
    body += struct.pack(">IHHHHHIII", l["message_bytes_max"], l["frames_per_message_max"],
                        l["proofs_per_batch_max"], l["entries_per_subscribe_max"], l["filters_per_bucket_max"],
                        l["subscribers_per_connection_max"], l["subscription_windows_ahead_max"],
                        l["connections_max"], l["send_queue_proofs_max"])
    p = policy
    body += struct.pack(">HHIIIIH", p["shards"], p["filter_fingerprints_max"], p["clock_skew_s"],
                        p["slow_consumer_grace_ms"], p["hello_timeout_ms"], p["idle_timeout_ms"],
                        p["protocol_errors_max"])
    body += auth_nonce
    assert len(body) == 106
    return HELLO_REPLY, f, body


def publish(seq, proofs):
    return PUBLISH, {"seq": seq, "proofs": proofs}, struct.pack(">Q", seq) + batch(proofs)


def ack(seq):
    return ACK, {"seq": seq}, struct.pack(">Q", seq)


def subscribe(subscriber, entries):
    body = subscriber + struct.pack(">H", len(entries))
    for e in entries:
        filt = bytes.fromhex(e["filter"])
        body += struct.pack(">HQQH", e["bucket"], e["window_from_s"], e["window_to_s"], len(filt)) + filt
    return SUBSCRIBE, {"subscriber": subscriber.hex(), "entries": entries}, body


def subscribed(subscriber, entries):
    return SUBSCRIBED, {"subscriber": subscriber.hex(), "entries": entries}, subscriber + struct.pack(">H", entries)


def unsubscribe(subscriber):
    return UNSUBSCRIBE, {"subscriber": subscriber.hex()}, subscriber


def claim(key, signature):
    assert len(key) == 32 and len(signature) == 64
    return CLAIM, {"key": key.hex(), "signature": signature.hex()}, key + signature


def deliver(subscriber, proofs):
    return DELIVER, {"subscriber": subscriber.hex(), "proofs": proofs}, subscriber + batch(proofs)


def fetch(subscriber, cursor, proofs_max):
    f = {"subscriber": subscriber.hex(), "cursor": cursor, "proofs_max": proofs_max}
    return FETCH, f, subscriber + struct.pack(">QH", cursor, proofs_max)


def fetch_reply(subscriber, next_cursor, more, proofs):
    f = {"subscriber": subscriber.hex(), "next_cursor": next_cursor, "more": more, "proofs": proofs}
    return FETCH_REPLY, f, subscriber + struct.pack(">QB", next_cursor, 1 if more else 0) + batch(proofs)


def error(code, ref_seq, detail, text):
    t = text.encode("utf-8")
    f = {"code": code, "ref_seq": ref_seq, "detail": detail, "text": text}
    return ERROR, f, struct.pack(">HQIH", code, ref_seq, detail, len(t)) + t


def message(name, frames, codec=None):
    out = {"name": name}
    if codec:
        out["codec"] = codec
    out["frames"] = [{"type": NAMES[t], "type_byte": t, "fields": f} for t, f, _ in frames]
    out["hex"] = b"".join(frame(t, body) for t, _, body in frames).hex()
    return out


def main():
    # The fixed-key claim of tests/vectors/claim.json (a signature that verifies; checked by
    # client_vectors_check.py), and its subscriber id.
    import os
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "claim.json")) as fh:
        cv = json.load(fh)
    claim_key, claim_sig = bytes.fromhex(cv["public_key"]), bytes.fromhex(cv["signature"])
    sub_claimed = bytes.fromhex(cv["subscriber_id"])
    nonce = sha256(b"tessera-auth-nonce")[0:16]
    sub_a = bytes(range(16))
    sub_b = sha256(b"tessera-subscriber-b")[0:16]
    node = sha256(b"tessera-node")[0:16]
    ws = 1_700_000_000
    p = [make_proof(n, ws) for n in range(4)]
    fps = [bytes.fromhex(x["fingerprint"]) for x in p]
    filt = bloom(fps[:2], 1024, 3).hex()
    filt2 = bloom(fps[2:], 1024, 3).hex()
    custom_limits = dict(DEFAULT_LIMITS, message_bytes_max=65536, frames_per_message_max=8,
                         proofs_per_batch_max=100, connections_max=10, send_queue_proofs_max=4294967295)
    custom_policy = dict(shards=65535, filter_fingerprints_max=65535, clock_skew_s=59,
                         slow_consumer_grace_ms=0, hello_timeout_ms=4294967295, idle_timeout_ms=300000,
                         protocol_errors_max=1)
    msgs = [
        message("HELLO client", [hello(3, 1, bytes(16))]),
        message("HELLO peer with node id", [hello(3, 2, node)]),
        message("HELLO version 2 (refused by a version-3 relay)", [hello(2, 1, bytes(16))]),
        message("HELLO future version", [hello(0xFFFF, 1, bytes(16))]),
        message("HELLO_REPLY defaults",
                [hello_reply(3, 64, 10, 1024, 3, 3600, node, DEFAULT_LIMITS, DEFAULT_POLICY, nonce)]),
        message("HELLO_REPLY custom", [hello_reply(3, 65535, 60, 2048, 5, 0xFFFFFFFF, bytes(16), custom_limits,
                                                   custom_policy, b"\xff" * 16)]),
        message("PUBLISH one proof", [publish(1, p[:1])]),
        message("PUBLISH three proofs, max seq", [publish(2**64 - 1, p[1:4])]),
        message("PUBLISH dummy-like proof (all-zero window, bucket 0)",
                [publish(0, [dict(p[0], bucket=0, window_start=0, ciphertext=bytes(512).hex())])]),
        message("ACK", [ack(7)]),
        message("ACK zero", [ack(0)]),
        message("SUBSCRIBE no entries", [subscribe(sub_a, [])]),
        message("SUBSCRIBE one entry", [subscribe(sub_a, [
            {"bucket": p[0]["bucket"], "window_from_s": ws, "window_to_s": ws + 3600, "filter": filt}])]),
        message("SUBSCRIBE two entries, one bucket (extra capacity)", [subscribe(sub_b, [
            {"bucket": 5, "window_from_s": ws, "window_to_s": ws, "filter": filt},
            {"bucket": 5, "window_from_s": 0, "window_to_s": 2**64 - 1, "filter": filt2}])]),
        message("SUBSCRIBE with m=2048 filters", [subscribe(sub_a, [
            {"bucket": 63, "window_from_s": 10, "window_to_s": 20, "filter": bloom(fps, 2048, 5).hex()}])],
            codec={"m_bits": 2048, "k": 5}),
        message("SUBSCRIBED", [subscribed(sub_a, 2)]),
        message("UNSUBSCRIBE", [unsubscribe(sub_b)]),
        message("CLAIM (the fixed-key vector of claim.json)", [claim(claim_key, claim_sig)]),
        message("CLAIM not a point, any signature (decodes; the relay refuses it: BAD_CLAIM)",
                [claim(b"\xff" * 32, bytes(range(64)))]),
        message("DELIVER two proofs", [deliver(sub_a, p[:2])]),
        message("FETCH from start", [fetch(sub_a, 0, 1024)]),
        message("FETCH page of one", [fetch(sub_b, 0x0102030405060708, 1)]),
        message("FETCH_REPLY empty, no more", [fetch_reply(sub_a, 0, False, [])]),
        message("FETCH_REPLY two proofs, more", [fetch_reply(sub_a, 42, True, p[2:4])]),
        message("ERROR malformed", [error(0x0001, 0, 9, "frame 0x10 has 3 trailing bytes")]),
        message("ERROR with ref_seq and UTF-8 text", [error(0x0020, 12345, 3, "bucket ≠ derived (προσοχή) ✓")]),
        message("ERROR empty text, unknown code", [error(0xBEEF, 0, 0, "")]),
        message("ERROR text of 256 bytes", [error(0x0031, 1, 2, "x" * 256)]),
        message("batch: HELLO, SUBSCRIBE, FETCH", [
            hello(3, 1, bytes(16)),
            subscribe(sub_a, [{"bucket": 1, "window_from_s": ws, "window_to_s": ws + 10, "filter": filt}]),
            fetch(sub_a, 0, 16)]),
        message("batch: CLAIM, SUBSCRIBE, FETCH (a client's first use of an id on a connection)", [
            claim(claim_key, claim_sig),
            subscribe(sub_claimed, [{"bucket": 1, "window_from_s": ws, "window_to_s": ws + 10, "filter": filt}]),
            fetch(sub_claimed, 0, 16)]),
        message("batch: ACK, DELIVER, ERROR", [ack(3), deliver(sub_b, p[3:4]), error(0x0015, 0, 0, "overloaded")]),
    ]
    doc = {
        "header": ("Encoded native-protocol v3 messages with their field values. Generated INDEPENDENTLY of the "
                   "Rust codec by tests/vectors/gen_frames.py using Python's struct (big-endian) from the layouts "
                   "in docs/PROTOCOL.md; tests/vectors.rs decodes each hex and compares fields, then re-encodes "
                   "and compares bytes. Do not edit by hand."),
        "generator": "python3 tests/vectors/gen_frames.py > tests/vectors/frames.json",
        "messages": msgs,
    }
    print(json.dumps(doc, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
