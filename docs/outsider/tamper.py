#!/usr/bin/env python3
"""Damages a copy of a release directory in one precise way, for check.sh.

Usage:
  tamper.py bad-signature TARGETS_JSON
      flip one hex digit of the first signature (the document stays valid JSON)
  upper-signature TARGETS_JSON
      write the first signature in uppercase hex: the same signature bytes,
      which a reader must refuse anyway (section 5.2)
  edit-targets TARGETS_JSON
      change the signed content (a product name) without re-signing it,
      keeping the document's length
  resign-pins DIR SNAPSHOT_KEY TIMESTAMP_KEY
      change the signed targets content, keep its (now wrong) signature, and
      re-pin it from a snapshot and timestamp re-signed with the real keys, so
      only the targets signature is wrong
  rogue-root METADATA_DIR
      add the next root version, naming a new root key and signed only by it

Key files are the agent's (section 16): TUF key JSON with keyval.private.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import blake3

import wg_spec as wg


def read(path: Path) -> dict:
    return json.loads(path.read_bytes())


def seed_of(key_file: str) -> bytes:
    return bytes.fromhex(read(Path(key_file))["keyval"]["private"])


def bad_signature(path: Path) -> None:
    doc = read(path)
    sig = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = ("1" if sig[0] == "0" else "0") + sig[1:]
    path.write_bytes(wg.canonical_json(doc))


def upper_signature(path: Path) -> None:
    doc = read(path)
    doc["signatures"][0]["sig"] = doc["signatures"][0]["sig"].upper()
    path.write_bytes(wg.canonical_json(doc))


def edit_signed(doc: dict) -> None:
    # An unknown field is kept and covered by the signature (section 5.3).
    doc["signed"]["x-tampered"] = "this field was not signed"


def edit_targets(path: Path) -> None:
    """Renames the product of the first release, keeping the document's length."""
    raw = path.read_bytes()
    at = raw.index(b'"product":"') + len(b'"product":"')
    swapped = b"b" if raw[at : at + 1] == b"a" else b"a"
    path.write_bytes(raw[:at] + swapped + raw[at + 1 :])


def repin(above: Path, name: str, below_bytes: bytes, seed: bytes) -> bytes:
    doc = read(above)
    pin = doc["signed"]["meta"][name]
    pin["length"] = len(below_bytes)
    pin["hashes"] = {"blake3": blake3.blake3(below_bytes).hexdigest()}
    out = wg.sign_envelope(doc["signed"], [seed])
    above.write_bytes(out)
    return out


def resign_pins(d: Path, snapshot_key: str, timestamp_key: str) -> None:
    meta = d / "metadata"
    targets = read(meta / "targets.json")
    edit_signed(targets)
    targets_bytes = wg.canonical_json(targets)
    (meta / "targets.json").write_bytes(targets_bytes)
    snapshot_bytes = repin(meta / "snapshot.json", "targets.json", targets_bytes, seed_of(snapshot_key))
    repin(meta / "timestamp.json", "snapshot.json", snapshot_bytes, seed_of(timestamp_key))


def rogue_root(meta: Path) -> None:
    newest = max(int(p.name.split(".")[0]) for p in meta.glob("*.root.json"))
    root = read(meta / f"{newest}.root.json")["signed"]
    seed = os.urandom(32)
    public = bytes(wg.signing_key(seed).verify_key)
    keyid = wg.key_id(public)
    root["keys"][keyid] = wg.tuf_public_key(public)
    root["roles"]["root"] = {"keyids": [keyid], "threshold": 1}
    root["version"] = newest + 1
    signed = wg.sign_envelope(root, [seed])
    (meta / f"{newest + 1}.root.json").write_bytes(signed)
    (meta / "root.json").write_bytes(signed)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = argv[0], argv[1:]
    if mode == "bad-signature" and len(args) == 1:
        bad_signature(Path(args[0]))
    elif mode == "upper-signature" and len(args) == 1:
        upper_signature(Path(args[0]))
    elif mode == "edit-targets" and len(args) == 1:
        edit_targets(Path(args[0]))
    elif mode == "resign-pins" and len(args) == 3:
        resign_pins(Path(args[0]), args[1], args[2])
    elif mode == "rogue-root" and len(args) == 1:
        rogue_root(Path(args[0]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
