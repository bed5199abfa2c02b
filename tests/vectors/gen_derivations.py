#!/usr/bin/env python3
"""Known-answer vectors for Tessera's byte-exact derivations (docs/FOUNDATIONS.md §2, docs/PROTOCOL.md §Derivations).

Written from the formulas alone, with Python's hashlib and int.from_bytes: it shares no code with the Rust
implementation, so `tests/vectors.rs` checking the Rust code against its output is an independent check.

    window_start  = t - t % window_s
    bucket        = u16_be(SHA-256(commit)[0..2]) mod num_buckets
    fingerprint   = SHA-256(commit || u64_be(window_start))[0..8]
    bloom pos i   = u32_be(SHA-256(item || u16_be(i))[0..4]) mod m        (i = 0..k)
    filter bytes  = m/8 bytes, bit j in byte j//8 under mask 1 << (j % 8)  (LSB first)

Regenerate (deterministic; the output must not change):
    python3 tests/vectors/gen_derivations.py > tests/vectors/derivations.json
"""
import hashlib
import json

U64_MAX = (1 << 64) - 1


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def commit_n(n: int) -> bytes:
    """A deterministic 32-byte commitment (any 32 bytes are a valid commit to a relay)."""
    return sha256(b"tessera-vector-commit-" + str(n).encode())


def window_start(t: int, window_s: int) -> int:
    return t - t % window_s


def bucket(commit: bytes, num_buckets: int) -> int:
    return int.from_bytes(sha256(commit)[0:2], "big") % num_buckets


def fingerprint(commit: bytes, ws: int) -> bytes:
    return sha256(commit + ws.to_bytes(8, "big"))[0:8]


def bloom_positions(item: bytes, m: int, k: int) -> list:
    return [int.from_bytes(sha256(item + i.to_bytes(2, "big"))[0:4], "big") % m for i in range(k)]


def bloom_filter(items: list, m: int, k: int) -> bytes:
    assert m % 8 == 0
    out = bytearray(m // 8)
    for item in items:
        for j in bloom_positions(item, m, k):
            out[j // 8] |= 1 << (j % 8)
    return bytes(out)


COMMITS = [bytes(32), b"\xff" * 32] + [commit_n(n) for n in range(6)]


def window_vectors():
    cases = []
    for t in [0, 1, 9, 10, 11, 19, 20, 21, 99, 100, 1_700_000_000, 1_700_000_009, 1_700_000_019,
              (1 << 32) - 1, 1 << 32, U64_MAX - 5, U64_MAX]:
        cases.append((t, 10))
    for t, w in [(0, 1), (12345, 1), (59, 60), (60, 60), (119, 60), (1_700_000_000, 3600), (U64_MAX, 7)]:
        cases.append((t, w))
    return [{"t": t, "window_s": w, "expected": window_start(t, w)} for t, w in cases]


def bucket_vectors():
    out = []
    for c in COMMITS:
        for n in [1, 7, 64, 100, 256, 65535]:
            out.append({
                "commit": c.hex(),
                "num_buckets": n,
                "sha256_prefix_u16": int.from_bytes(sha256(c)[0:2], "big"),
                "expected": bucket(c, n),
            })
    return out


def fingerprint_vectors():
    out = []
    for i, c in enumerate(COMMITS):
        for ws in [0, 10, 1_700_000_000, 1_700_000_010, U64_MAX - 5][: 2 + i % 4]:
            out.append({"commit": c.hex(), "window_start": ws, "expected": fingerprint(c, ws).hex()})
    return out


def position_vectors():
    out = []
    fps = [fingerprint(commit_n(n), 1_700_000_000) for n in range(3)]
    params = [(1024, 3), (2048, 5), (1000, 7), (8, 1), (65536, 16), (1, 4), (4_294_967_295, 2)]
    for item in fps + [bytes(8), b"\xff" * 8]:
        for m, k in params:
            out.append({"item": item.hex(), "m_bits": m, "k": k, "expected": bloom_positions(item, m, k)})
    # `bloom_positions` hashes any byte string (the reference's BloomFilter.add); lengths other than 8.
    for item in [b"", b"abc", commit_n(0), b"tessera" * 10]:
        for m, k in [(1024, 3), (1000, 7)]:
            out.append({"item": item.hex(), "m_bits": m, "k": k, "expected": bloom_positions(item, m, k)})
    return out


def filter_vectors():
    out = []

    def add(name, items, m, k):
        f = bloom_filter(items, m, k)
        out.append({
            "name": name,
            "m_bits": m,
            "k": k,
            "items": [i.hex() for i in items],
            "ones": sum(bin(b).count("1") for b in f),
            "expected_hex": f.hex(),
        })

    add("empty default filter", [], 1024, 3)
    add("one fingerprint", [fingerprint(commit_n(0), 1_700_000_000)], 1024, 3)
    # A reference subscription: one expected commit, the current window and the 59 before it (60 fingerprints).
    now = 1_700_000_123
    add("reference subscription, 60 windows",
        [fingerprint(commit_n(1), window_start(now, 10) - 10 * j) for j in range(60)], 1024, 3)
    add("m=2048 k=5, 10 fingerprints", [fingerprint(commit_n(n), 1_700_000_000) for n in range(10)], 2048, 5)
    add("m=8 k=1, 3 items", [bytes(8), b"\xff" * 8, fingerprint(commit_n(2), 0)], 8, 1)
    add("m=1000 k=7, 5 fingerprints", [fingerprint(commit_n(n), 10) for n in range(5)], 1000, 7)
    add("m=65536 k=16, 2 fingerprints", [fingerprint(commit_n(n), 20) for n in range(2)], 65536, 16)
    add("arbitrary-length items", [b"", b"abc", b"tessera" * 10], 1024, 3)
    return out


def main():
    doc = {
        "header": ("Known-answer vectors for window_start, bucket, fingerprint, Bloom positions and serialised "
                   "Bloom filters (docs/FOUNDATIONS.md §2). Generated INDEPENDENTLY of the Rust code by "
                   "tests/vectors/gen_derivations.py using only Python's hashlib and int.from_bytes; checked "
                   "against the Rust implementation by tests/vectors.rs. Do not edit by hand."),
        "generator": "python3 tests/vectors/gen_derivations.py > tests/vectors/derivations.json",
        "formulas": {
            "window_start": "t - t % window_s",
            "bucket": "u16_be(SHA-256(commit)[0..2]) mod num_buckets",
            "fingerprint": "SHA-256(commit || u64_be(window_start))[0..8]",
            "bloom_position": "u32_be(SHA-256(item || u16_be(i))[0..4]) mod m_bits, i = 0..k",
            "bloom_filter": "m_bits/8 bytes; bit j in byte j/8 under mask 1 << (j % 8) (LSB first)",
        },
        "window_start": window_vectors(),
        "bucket": bucket_vectors(),
        "fingerprint": fingerprint_vectors(),
        "bloom_positions": position_vectors(),
        "bloom_filter": filter_vectors(),
    }
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
