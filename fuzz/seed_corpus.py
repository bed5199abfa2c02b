#!/usr/bin/env python3
"""Seeds the decode_message corpus with every valid message of tests/vectors/frames.json (docs/FUZZING.md).

Valid messages of every frame type let libFuzzer start past the type byte and the length checks instead of
discovering the layouts from nothing. Run from the repository root: python3 fuzz/seed_corpus.py
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus" / "decode_message"
corpus.mkdir(parents=True, exist_ok=True)
messages = json.loads((root / "tests" / "vectors" / "frames.json").read_text())["messages"]
for i, m in enumerate(messages):
    (corpus / f"vector-{i:02}").write_bytes(bytes.fromhex(m["hex"]))
print(f"wrote {len(messages)} seeds to {corpus}")
