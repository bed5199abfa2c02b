#!/usr/bin/env python3
"""Independent check of tests/vectors/client_*.json and claim.json (the Rust implementation wrote them).

Recomputes every value from the seeds with separate code: HKDF-SHA256 and AES-256-GCM from the
`cryptography` package, SHA-256/512 from hashlib, and Ristretto255 implemented here from RFC 9496
(Edwards25519 in extended coordinates; encoding per §4.3.2), self-checked against the RFC's encodings
of B and 2B. Run from the repository root:  python3 tests/vectors/client_vectors_check.py
Exit status 0 and "all client vectors check" when every value agrees.
"""
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- Ristretto255 (RFC 9496)
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
INVSQRT_A_MINUS_D = 54469307008909316920995813868745141605393597292927456921205312896311721017578
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
B = (BX, BY, 1, BX * BY % P)
IDENTITY = (0, 1, 1, 0)


def is_negative(x):
    return (x % P) & 1


def ct_abs(x):
    return (-x) % P if is_negative(x) else x % P


def sqrt_ratio_m1(u, v):
    r = (u * pow(v, 3, P)) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    check = v * r * r % P
    correct = check == u % P
    flipped = check == (-u) % P
    flipped_i = check == (-u * SQRT_M1) % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    return correct or flipped, ct_abs(r)


def add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(k, point):
    result, addend = IDENTITY, point
    while k:
        if k & 1:
            result = add(result, addend)
        addend = add(addend, addend)
        k >>= 1
    return result


def encode(point):
    x0, y0, z0, t0 = point
    u1 = (z0 + y0) * (z0 - y0) % P
    u2 = x0 * y0 % P
    _, invsqrt = sqrt_ratio_m1(1, u1 * u2 * u2 % P)
    den1 = invsqrt * u1 % P
    den2 = invsqrt * u2 % P
    z_inv = den1 * den2 * t0 % P
    rotate = is_negative(t0 * z_inv)
    if rotate:
        x, y, den_inv = y0 * SQRT_M1 % P, x0 * SQRT_M1 % P, den1 * INVSQRT_A_MINUS_D % P
    else:
        x, y, den_inv = x0, y0, den2
    if is_negative(x * z_inv):
        y = -y % P
    s = ct_abs(den_inv * (z0 - y))
    return s.to_bytes(32, "little")


assert encode(IDENTITY) == bytes(32)
assert encode(B).hex() == "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
assert encode(mul(2, B)).hex() == "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919"

# ---------------------------------------------------------------- the Tessera key schedule


def scalar(data):
    return int.from_bytes(data, "little") % L


def le(k):
    return (k % L).to_bytes(32, "little")


def sha512_scalar(*parts):
    return scalar(hashlib.sha512(b"".join(parts)).digest())


def expand(prk, info, length):
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def identity(seed):
    x = sha512_scalar(b"tessera/v1/identity", seed)
    return x, mul(x, B)


def delivery(k, window, direction, seq):
    did = window.to_bytes(8, "big") + bytes([direction]) + seq.to_bytes(4, "big")
    session = expand(k, b"tessera/v1/session" + did, 32)
    ephemeral = expand(k, b"tessera/v1/ephemeral" + did, 32)
    t = scalar(expand(k, b"tessera/v1/blind" + session, 64))
    okm = expand(k, b"tessera/v1/seal" + did, 44)
    return did, session, ephemeral, t, okm[:32], okm[32:]


def routing(y_blinded, ephemeral, session, window, num_buckets):
    commit = hashlib.sha256(y_blinded + ephemeral + session).digest()
    bucket = int.from_bytes(hashlib.sha256(commit).digest()[:2], "big") % num_buckets
    fingerprint = hashlib.sha256(commit + window.to_bytes(8, "big")).digest()[:8]
    return commit, bucket, fingerprint


def check(name, got, want):
    if got != want:
        sys.exit(f"MISMATCH {name}: computed {got!r}, vector has {want!r}")


def check_keys(v):
    xa, ya = identity(bytes.fromhex(v["alice_seed"]))
    xb, yb = identity(bytes.fromhex(v["bob_seed"]))
    check("alice_scalar", le(xa).hex(), v["alice_scalar"])
    check("bob_scalar", le(xb).hex(), v["bob_scalar"])
    pa, pb = encode(ya), encode(yb)
    check("alice_public", pa.hex(), v["alice_public"])
    check("bob_public", pb.hex(), v["bob_public"])
    dh = encode(mul(xa, yb))
    check("dh symmetric", dh, encode(mul(xb, ya)))
    check("dh_shared", dh.hex(), v["dh_shared"])
    lo, hi = sorted([pa, pb])
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tessera/v1/pairwise", info=lo + hi).derive(dh)
    check("pairwise_secret", k.hex(), v["pairwise_secret"])
    check("alice_send_direction", 0 if pa == lo else 1, v["alice_send_direction"])
    senders = {"alice": ya, "bob": yb}
    for item in v["deliveries"]:
        w, dirn, seq = item["window_start"], item["direction"], item["seq"]
        sender = "alice" if dirn == v["alice_send_direction"] else "bob"
        check("sender", sender, item["sender"])
        did, session, ephemeral, t, key, nonce = delivery(k, w, dirn, seq)
        y_blinded = encode(add(senders[sender], mul(t, B)))
        commit, bucket, fp = routing(y_blinded, ephemeral, session, w, v["num_buckets"])
        for field, value in [
            ("delivery_id", did.hex()), ("session_id", session.hex()), ("ephemeral_key", ephemeral.hex()),
            ("blind_scalar", le(t).hex()), ("blinded_public", y_blinded.hex()), ("commit", commit.hex()),
            ("bucket", bucket), ("fingerprint", fp.hex()), ("aead_key", key.hex()), ("aead_nonce", nonce.hex()),
        ]:
            check(f"delivery {w}/{dirn}/{seq} {field}", value, item[field])


def check_envelope(v):
    x, _ = identity(bytes.fromhex(v["sender_seed"]))
    k = bytes.fromhex(v["pairwise_secret"])
    w, dirn, seq = v["window_start"], v["direction"], v["seq"]
    did, session, ephemeral, t, key, nonce = delivery(k, w, dirn, seq)
    x_blinded = (x + t) % L
    check("blinded_secret", le(x_blinded).hex(), v["blinded_secret"])
    y_blinded = encode(mul(x_blinded, B))
    commit, bucket, fp = routing(y_blinded, ephemeral, session, w, v["num_buckets"])
    message = bytes.fromhex(v["message"])
    body = bytes([1, 0, v["part_index"], v["part_count"]]) + len(message).to_bytes(2, "big") + message
    body += bytes(400 - len(body))
    r = sha512_scalar(b"tessera/v1/schnorr-nonce", le(x_blinded), bytes.fromhex(v["aux"]), body)
    check("nonce_scalar", le(r).hex(), v["nonce_scalar"])
    big_r = encode(mul(r, B))
    c = sha512_scalar(b"tessera/v1/schnorr-challenge", y_blinded, big_r, commit, w.to_bytes(8, "big"), body)
    check("challenge_scalar", le(c).hex(), v["challenge_scalar"])
    s = (r + c * x_blinded) % L
    # Verification equation, the recipient's way: s·B == R + c·(Y + t·B).
    check("schnorr equation", encode(mul(s, B)), encode(add(mul(r, B), mul(c, mul(x_blinded, B)))))
    plaintext = y_blinded + big_r + le(s) + body
    check("plaintext", plaintext.hex(), v["plaintext"])
    aad = commit + w.to_bytes(8, "big") + bucket.to_bytes(2, "big")
    check("aad", aad.hex(), v["aad"])
    check("aead_key", key.hex(), v["aead_key"])
    check("aead_nonce", nonce.hex(), v["aead_nonce"])
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, aad)
    proof = bytes([1, 0]) + bucket.to_bytes(2, "big") + w.to_bytes(8, "big") + commit + fp + ciphertext
    check("proof length", len(proof), 564)
    check("proof", proof.hex(), v["proof"])


ALPHABET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def base32(data):
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ALPHABET[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def check_invite(v):
    payload = bytes([1]) + bytes.fromhex(v["public"]) + bytes([len(v["relays"])])
    for url in v["relays"]:
        payload += bytes([len(url)]) + url.encode()
    checksum = hashlib.sha256(b"tessera/v1/invite" + payload).digest()[:4]
    check("invite code", "tessera1" + base32(payload + checksum), v["code"])
    lo, hi = sorted([bytes.fromhex(v["public"]), bytes.fromhex(v["bob_public"])])
    text = base32(hashlib.sha256(b"tessera/v1/safety" + lo + hi).digest()[:10])
    check("safety code", "-".join(text[i:i + 4] for i in range(0, 16, 4)), v["safety_code"])


def invite_v2_payload(side):
    payload = bytes([2]) + bytes.fromhex(side["public"]) + bytes([len(side["relays"])])
    for relay in side["relays"]:
        payload += bytes([len(relay["url"])]) + relay["url"].encode()
        payload += bytes([0]) if relay["pin"] is None else bytes([1]) + bytes.fromhex(relay["pin"])
    return payload


def check_invite_v2(v):
    payloads = []
    for name in ("alice", "bob"):
        payload = invite_v2_payload(v[name])
        check(name + " v2 payload", payload.hex(), v[name]["payload"])
        checksum = hashlib.sha256(b"tessera/v1/invite" + payload).digest()[:4]
        check(name + " v2 invite code", "tessera1" + base32(payload + checksum), v[name]["code"])
        payloads.append(payload)
    lo, hi = sorted(payloads)
    data = v["label"].encode()
    for p in (lo, hi):
        data += len(p).to_bytes(2, "big") + p
    digest = hashlib.sha512(data).digest()
    groups = [int.from_bytes(digest[8 * i:8 * i + 8], "big") % 100000 for i in range(8)]
    check("safety code v2", " ".join(f"{g:05d}" for g in groups), v["safety_code"])


def neg(point):
    x, y, z, t = point
    return (-x % P, y, z, -t % P)


def check_claim(v):
    """A CLAIM (docs/PROTOCOL.md §4.12): key, id, hedged nonce, challenge, response, and the verification
    equation s·B − c·X = R, all from the secret, node id, nonce and aux."""
    labels = {k: val.encode() for k, val in v["labels"].items()}
    x = sha512_scalar(labels["subscriber_key"], bytes.fromhex(v["secret"]))
    check("claim scalar_x", le(x).hex(), v["scalar_x"])
    big_x = mul(x, B)
    pub = encode(big_x)
    check("claim public_key", pub.hex(), v["public_key"])
    check("claim subscriber_id", hashlib.sha256(labels["subscriber_id"] + pub).digest()[:16].hex(),
          v["subscriber_id"])
    transcript = bytes.fromhex(v["node_id"]) + bytes.fromhex(v["auth_nonce"]) + pub
    check("claim transcript", transcript.hex(), v["transcript"])
    r = sha512_scalar(labels["claim_nonce"], le(x), bytes.fromhex(v["aux"]), transcript)
    check("claim nonce_r", le(r).hex(), v["nonce_r"])
    big_r = encode(mul(r, B))
    check("claim commitment_R", big_r.hex(), v["commitment_R"])
    c = sha512_scalar(labels["claim"], transcript, big_r)
    check("claim challenge_c", le(c).hex(), v["challenge_c"])
    s = (r + c * x) % L
    check("claim response_s", le(s).hex(), v["response_s"])
    check("claim signature", (big_r + le(s)).hex(), v["signature"])
    check("claim verifies", encode(add(mul(s, B), neg(mul(c, big_x)))), big_r)
    check("claim frame", (bytes([0x23]) + (96).to_bytes(4, "big") + pub + big_r + le(s)).hex(), v["frame"])


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return json.load(f)


check_keys(load("client_keys.json"))
check_envelope(load("client_envelope.json"))
check_invite(load("client_invite.json"))
check_invite_v2(load("client_invite_v2.json"))
check_claim(load("claim.json"))
print("all client vectors check")
