#!/usr/bin/env python3
"""Verifies a waveguard release directory with python-tuf, PyNaCl and blake3.

Usage:
  verify_release.py DIR [--root TRUSTED_ROOT.json] [--release ID|PRODUCT/VERSION] [--at TIME]

An outsider's check of what `waveguard publish` wrote, following only
docs/protocol.md (sections 6, 7, 9 and 16):

1. Trust: bootstrap from --root (default DIR/metadata/1.root.json, trust on
   first use), walk the root rotations N.root.json with python-tuf
   (`Metadata.from_bytes`, `Root.verify_delegate` for both the old and the new
   root), then timestamp, snapshot and targets: signatures to threshold,
   versions, expiry at --at (default now), and the length and blake3 pins
   (python-tuf cannot hash blake3, so the `blake3` package does that step).
   Every document must also pass the envelope rules python-tuf does not
   check: lowercase hex key IDs and signatures, and a `signed` value that
   reads back unchanged from its canonical form (NFC text, no control
   characters).
2. Releases: every target entry must be a valid waveguard release.
3. Content, for every release (or the one asked for): the chunk list against
   its signed length and blake3, every chunk against the list, and the
   reassembled artifact against the signed length and blake3.

Exits 0 when everything verifies; otherwise prints one line saying exactly
what failed (document, role, chunk index and hash, file) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import blake3
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

import wg_spec as wg

# Section 13 limits.
MAX_ROOT_BYTES = 1 << 20
MAX_TIMESTAMP_BYTES = 1 << 20
MAX_SNAPSHOT_BYTES = 1 << 20
MAX_TARGETS_BYTES = 10 << 20
MAX_ROOT_ROTATIONS = 1024
MAX_KEYS_PER_ROOT = 64
MAX_SIGNATURES = 64
MAX_TARGETS = 256
MAX_NAME_BYTES = 128
MAX_WAVES = 16
MAX_MIN_REPORTS = 256
MIN_CHUNK_MIN = 16 * 1024
MAX_CHUNK_MIN = 1024 * 1024
MAX_CHUNK_AVG = 4 * 1024 * 1024
MAX_ARTIFACT_BYTES = 1 << 40
MAX_BAKE_SECONDS = 365 * 24 * 3600
TOP_LEVEL_ROLES = {"root", "targets", "snapshot", "timestamp"}


class Failure(Exception):
    """A verification failure, with a message naming what failed."""


# --- reading files, bounded ------------------------------------------------------


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Reads at most limit + 1 bytes, so an over-long file is noticed without reading it whole."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise Failure(f"{what}: {path} is missing") from None
    except OSError as e:
        raise Failure(f"{what}: cannot read {path}: {e}") from None
    if len(data) > limit:
        raise Failure(f"{what}: {path} is longer than {limit} bytes")
    return data


# --- TUF documents ----------------------------------------------------------------


@dataclass
class Doc:
    """A parsed document with the exact bytes it was read from."""

    md: Metadata
    raw: bytes
    what: str

    @property
    def version(self) -> int:
        return self.md.signed.version

    def signed_json(self) -> dict:
        return json.loads(self.raw)["signed"]


def load(path: Path, limit: int, expected_type: type, what: str) -> Doc:
    """Reads and parses one document (size limit first, then the envelope rules of section 5.2)."""
    raw = read_bounded(path, limit, what)
    try:
        wg.read_envelope(raw)
    except wg.Refused as e:
        raise Failure(f"{what} is refused by the envelope rules of section 5.2: {e}") from None
    try:
        md = Metadata.from_bytes(raw)
    except Exception as e:  # python-tuf raises several exception types for bad input
        raise Failure(f"{what} is not valid TUF metadata: {e}") from None
    if not isinstance(md.signed, expected_type):
        raise Failure(f"{what} has _type {md.signed.type!r}, expected {expected_type.type!r}")
    if len(md.signatures) > MAX_SIGNATURES:
        raise Failure(f"{what} carries {len(md.signatures)} signatures, over the limit of {MAX_SIGNATURES}")
    if md.signed.version < 1:
        raise Failure(f"{what} has version {md.signed.version}; versions start at 1")
    doc = Doc(md, raw, what)
    # python-tuf verifies signatures over `signed` re-serialised from its parsed
    # form; the spec signs the value as received (section 5.3). Insist they are
    # the same bytes, so a document python-tuf would read differently fails here.
    try:
        received = wg.canonical_json(doc.signed_json())
    except (ValueError, TypeError) as e:
        raise Failure(f"{what} has no canonical JSON form: {e}") from None
    if received != md.signed_bytes:
        raise Failure(f"{what}: python-tuf reads it differently from the document as received")
    return doc


def check_root_rules(doc: Doc) -> None:
    """Section 6.2 rules that python-tuf does not enforce itself."""
    root: Root = doc.md.signed
    what = doc.what
    if len(root.keys) > MAX_KEYS_PER_ROOT:
        raise Failure(f"{what} lists {len(root.keys)} keys, over the limit of {MAX_KEYS_PER_ROOT}")
    for keyid, key in root.keys.items():
        public = key.keyval.get("public", "")
        if key.keytype != "ed25519" or key.scheme != "ed25519":
            raise Failure(f"{what}: key {keyid} is {key.keytype}/{key.scheme}, only ed25519 is accepted")
        if len(public) != 64 or any(c not in "0123456789abcdef" for c in public):
            raise Failure(f"{what}: key {keyid} is not 64 lowercase hex digits")
        if key.unrecognized_fields or set(key.keyval) != {"public"}:
            raise Failure(f"{what}: key {keyid} has fields outside the TUF ed25519 key format")
        if wg.key_id(bytes.fromhex(public)) != keyid:
            raise Failure(f"{what}: the key listed as {keyid} has key ID {wg.key_id(bytes.fromhex(public))}")
    roles = {name: {"keyids": r.keyids, "threshold": r.threshold} for name, r in root.roles.items()}
    extra = root.unrecognized_fields.get("waveguard")
    if extra is not None:
        operator = extra.get("operator") if isinstance(extra, dict) else None
        if not isinstance(operator, dict):
            raise Failure(f"{what}: waveguard must be an object with an operator role")
        roles["waveguard.operator"] = operator
    for name, role in roles.items():
        keyids, threshold = role.get("keyids"), role.get("threshold")
        if not isinstance(keyids, list) or not isinstance(threshold, int) or isinstance(threshold, bool):
            raise Failure(f"{what}: role {name} must have keyids and an integer threshold")
        if len(set(keyids)) != len(keyids):
            raise Failure(f"{what}: role {name} lists a key more than once")
        unknown = [k for k in keyids if k not in root.keys]
        if unknown:
            raise Failure(f"{what}: role {name} names key {unknown[0]}, which is not in the root's keys")
        if not 1 <= threshold <= len(keyids):
            raise Failure(f"{what}: role {name} has threshold {threshold} with {len(keyids)} key(s)")


def verify_role(delegator: Doc, role: str, doc: Doc, what: str) -> None:
    """Signatures to threshold (section 5.3), checked by python-tuf."""
    try:
        delegator.md.signed.verify_delegate(role, doc.md.signed_bytes, doc.md.signatures)
    except UnsignedMetadataError as e:
        raise Failure(
            f"{what}: not signed by the {role} role of root v{delegator.version} to its threshold ({e})"
        ) from None


def check_expiry(doc: Doc, now: datetime) -> None:
    """Freeze protection: expired when now >= expires (section 5.4)."""
    if doc.md.signed.is_expired(now):
        expires = doc.md.signed.expires
        raise Failure(f"{doc.what} v{doc.version} expired at {expires:%Y-%m-%dT%H:%M:%SZ} (checked at {now:%Y-%m-%dT%H:%M:%SZ})")


def check_pin(above: Doc, name: str, limit: int, doc: Doc) -> None:
    """Section 6.3: the pin's version, length and blake3 against the document's exact bytes."""
    meta = above.signed_json().get("meta")
    if not isinstance(meta, dict) or set(meta) != {name}:
        raise Failure(f"{above.what}: meta must hold exactly {name!r}")
    pin = meta[name]
    length, version = pin.get("length"), pin.get("version")
    if not isinstance(length, int) or not 0 <= length <= limit:
        raise Failure(f"{above.what}: the {name} pin has no length, or one over {limit}")
    digest = (pin.get("hashes") or {}).get("blake3")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise Failure(f"{above.what}: the {name} pin has no blake3 of 64 lowercase hex digits")
    if doc.version != version:
        raise Failure(f"{doc.what} is v{doc.version}, {above.what} names v{version} (mix-and-match)")
    if len(doc.raw) != length:
        raise Failure(f"{doc.what} is {len(doc.raw)} bytes, {above.what} says {length}")
    got = blake3.blake3(doc.raw).hexdigest()
    if got != digest:
        raise Failure(f"{doc.what} has blake3 {got}, {above.what} says {digest}")


def verify_trust(metadata: Path, root_path: Path | None, now: datetime) -> tuple[Doc, Doc]:
    """Returns (final root, targets) after the client workflow of section 7."""
    if root_path is None:
        root_path = metadata / "1.root.json"
        print(
            f"verify_release: warning: trusting {root_path} on first use; pass --root with a root obtained out of band",
            file=sys.stderr,
        )
    root = load(root_path, MAX_ROOT_BYTES, Root, f"trusted root {root_path}")
    check_root_rules(root)
    verify_role(root, "root", root, root.what)
    # Walk the rotations: N+1 must be signed by N's root role and by its own.
    for _ in range(MAX_ROOT_ROTATIONS + 1):
        path = metadata / f"{root.version + 1}.root.json"
        if not path.exists():
            break
        new = load(path, MAX_ROOT_BYTES, Root, f"root metadata {path}")
        if new.version != root.version + 1:
            raise Failure(f"{new.what} has version {new.version}, expected {root.version + 1}")
        check_root_rules(new)
        name = f"root v{new.version} ({path})"
        verify_role(root, "root", new, f"{name}, checked with the trusted root v{root.version}'s keys")
        verify_role(new, "root", new, f"{name}, checked with its own root keys")
        root = new
    else:
        raise Failure(f"more than {MAX_ROOT_ROTATIONS} root rotations")
    current = metadata / "root.json"
    if current.exists() and read_bounded(current, MAX_ROOT_BYTES, "root.json") != root.raw:
        raise Failure(f"{current} is not the newest root v{root.version} found by walking N.root.json")
    check_expiry(root, now)

    ts = load(metadata / "timestamp.json", MAX_TIMESTAMP_BYTES, Timestamp, "timestamp metadata")
    verify_role(root, "timestamp", ts, ts.what)
    check_expiry(ts, now)

    snap = load(metadata / "snapshot.json", MAX_SNAPSHOT_BYTES, Snapshot, "snapshot metadata")
    check_pin(ts, "snapshot.json", MAX_SNAPSHOT_BYTES, snap)
    verify_role(root, "snapshot", snap, snap.what)
    check_expiry(snap, now)

    targets = load(metadata / "targets.json", MAX_TARGETS_BYTES, Targets, "targets metadata")
    check_pin(snap, "targets.json", MAX_TARGETS_BYTES, targets)
    verify_role(root, "targets", targets, targets.what)
    check_expiry(targets, now)
    if len(targets.md.signed.targets) > MAX_TARGETS:
        raise Failure(f"targets metadata lists {len(targets.md.signed.targets)} targets, over the limit of {MAX_TARGETS}")
    return root, targets


# --- releases (section 6.4) ------------------------------------------------------------


def check_name(field: str, value) -> None:
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_NAME_BYTES:
        raise Failure(f"{field} {value!r} must be 1 to {MAX_NAME_BYTES} bytes")
    if any(not (0x21 <= ord(c) <= 0x7E) or c in '"\\' for c in value):
        raise Failure(f"{field} {value!r} must be printable ASCII without spaces, quotes or backslashes")


def lower_hex32(value, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise Failure(f"{what} is not 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Failure(f"{what} is not 64 lowercase hex digits") from None


def uint(obj: dict, key: str, what: str, bits: int) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise Failure(f"{what}.{key} must be an unsigned {bits}-bit integer")
    return v


class ReleaseInfo:
    def __init__(self, path: str, target) -> None:
        what = f"target {path!r}"
        check_name("target path", path)
        self.path = path
        self.length = target.length
        if self.length > MAX_ARTIFACT_BYTES:
            raise Failure(f"{what}: artifact length {self.length} is over the limit of {MAX_ARTIFACT_BYTES}")
        self.blake3 = lower_hex32(target.hashes.get("blake3"), f"{what}: hashes.blake3")
        custom = target.custom or {}
        w = custom.get("waveguard") if isinstance(custom, dict) else None
        if not isinstance(w, dict):
            raise Failure(f"{what} has no custom.waveguard release fields")
        check_name(f"{what}: product", w.get("product"))
        check_name(f"{what}: version", w.get("version"))
        self.product, self.version = w["product"], w["version"]
        cl = w.get("chunk_list")
        self.list_length = uint(cl, "length", f"{what}: chunk_list", 64)
        self.list_blake3 = lower_hex32((cl or {}).get("blake3"), f"{what}: chunk_list.blake3")
        self.chunks = uint(cl, "chunks", f"{what}: chunk_list", 32)
        ch = w.get("chunker")
        if not isinstance(ch, dict) or ch.get("algorithm") != "fastcdc-v2020":
            raise Failure(f"{what}: chunker.algorithm must be fastcdc-v2020")
        mn, avg, mx = (uint(ch, k, f"{what}: chunker", 32) for k in ("min_size", "avg_size", "max_size"))
        if not MIN_CHUNK_MIN <= mn <= avg <= mx <= wg.MAX_CHUNK_BYTES or mn > MAX_CHUNK_MIN or avg > MAX_CHUNK_AVG:
            raise Failure(f"{what}: chunker sizes min {mn} avg {avg} max {mx} out of order or bounds")
        self.max_size = mx
        if self.chunks > wg.MAX_CHUNKS_PER_RELEASE:
            raise Failure(f"{what}: {self.chunks} chunks is over the limit of {wg.MAX_CHUNKS_PER_RELEASE}")
        if self.list_length != 20 + 36 * self.chunks:
            raise Failure(f"{what}: chunk list length {self.list_length} does not match {self.chunks} chunks")
        if self.chunks == 0 and self.length != 0 or self.chunks > 0 and not 1 <= self.length <= self.chunks * mx:
            raise Failure(f"{what}: artifact length {self.length} cannot be cut into {self.chunks} chunks of at most {mx} bytes")
        self.check_rollout(w.get("rollout"), what)
        self.id = wg.release_id(self.product, self.version, self.blake3)

    @staticmethod
    def check_rollout(r, what: str) -> None:
        if not isinstance(r, dict):
            raise Failure(f"{what}: rollout is missing")
        wg.parse_time(r.get("start", ""))
        waves = r.get("waves")
        if not isinstance(waves, list) or not 1 <= len(waves) <= MAX_WAVES:
            raise Failure(f"{what}: rollout needs 1 to {MAX_WAVES} waves")
        prev = 0
        for i, wave in enumerate(waves):
            check_name(f"{what}: wave {i} name", (wave or {}).get("name"))
            cum = uint(wave, "cumulative_ppm", f"{what}: wave {i}", 32)
            if not prev < cum <= wg.PPM:
                raise Failure(f"{what}: wave {i} cumulative_ppm {cum} must increase up to {wg.PPM}")
            if uint(wave, "bake_seconds", f"{what}: wave {i}", 64) > MAX_BAKE_SECONDS:
                raise Failure(f"{what}: wave {i} bakes for more than a year")
            prev = cum
        if prev != wg.PPM:
            raise Failure(f"{what}: the last wave must reach {wg.PPM} ppm")
        h = r.get("health")
        if not 1 <= uint(h, "max_failure_ppm", f"{what}: health", 32) <= wg.PPM:
            raise Failure(f"{what}: max_failure_ppm must be 1 to {wg.PPM}")
        if not 1 <= uint(h, "min_reports", f"{what}: health", 32) <= MAX_MIN_REPORTS:
            raise Failure(f"{what}: min_reports must be 1 to {MAX_MIN_REPORTS}")
        if "report_ppm" in h and not 1 <= uint(h, "report_ppm", f"{what}: health", 32) <= wg.PPM:
            raise Failure(f"{what}: report_ppm must be 1 to {wg.PPM}")
        beat = uint(h, "heartbeat_seconds", f"{what}: health", 64)
        if beat == 0 or uint(h, "silence_seconds", f"{what}: health", 64) <= beat:
            raise Failure(f"{what}: silence_seconds must exceed heartbeat_seconds, which must be at least 1")


def releases_of(targets: Doc) -> list[ReleaseInfo]:
    out, seen = [], {}
    entries = targets.md.signed.targets
    for path in sorted(entries):
        r = ReleaseInfo(path, entries[path])
        if r.id in seen:
            raise Failure(f"targets {seen[r.id]!r} and {path!r} are the same release {r.id.hex()}")
        seen[r.id] = path
        out.append(r)
    return out


# --- content (section 9.4) -----------------------------------------------------------------


def verify_content(d: Path, r: ReleaseInfo) -> int:
    name = f"{r.product} {r.version}"
    list_path = d / "chunklists" / f"{r.id.hex()}.wgcl"
    data = read_bounded(list_path, r.list_length, f"chunk list of {name}")
    if len(data) != r.list_length:
        raise Failure(f"chunk list of {name} ({list_path}) is {len(data)} bytes, the release says {r.list_length}")
    got = blake3.blake3(data).hexdigest()
    if got != r.list_blake3.hex():
        raise Failure(f"chunk list of {name} ({list_path}) hashes to {got}, the release says {r.list_blake3.hex()}")
    try:
        total, chunks = wg.decode_chunk_list(data, r.max_size)
    except ValueError as e:
        raise Failure(f"chunk list of {name} ({list_path}): {e}") from None
    if total != r.length:
        raise Failure(f"chunk list of {name} adds up to {total} bytes, the artifact is {r.length}")
    artifact = blake3.blake3()
    for i, (length, digest) in enumerate(chunks):
        path = d / "chunks" / digest.hex()
        what = f"chunk {i} ({digest.hex()}) of {name}"
        body = read_bounded(path, length, what)
        if len(body) != length:
            raise Failure(f"{what} ({path}) is {len(body)} bytes, expected {length}")
        got = blake3.blake3(body).hexdigest()
        if got != digest.hex():
            raise Failure(f"{what} ({path}) hashes to {got}, expected {digest.hex()}")
        artifact.update(body)
    if artifact.hexdigest() != r.blake3.hex():
        raise Failure(f"the reassembled artifact of {name} hashes to {artifact.hexdigest()}, the release says {r.blake3.hex()}")
    return len(chunks)


def parse_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        return datetime.fromtimestamp(wg.parse_time(text) // 1000, timezone.utc)
    except ValueError as e:
        raise Failure(f"--at: {e}") from None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path, help="the release directory written by `waveguard publish`")
    p.add_argument("--root", type=Path, help="a trusted root obtained out of band (default: DIR/metadata/1.root.json)")
    p.add_argument("--release", help="only this release: 64 hex digits or PRODUCT/VERSION")
    p.add_argument("--at", help="verify as of this time (YYYY-MM-DDTHH:MM:SSZ) instead of now")
    args = p.parse_args(argv)
    try:
        now = parse_at(args.at)
        root, targets = verify_trust(args.dir / "metadata", args.root, now)
        releases = releases_of(targets)
        if args.release:
            releases = [r for r in releases if args.release in (r.id.hex(), f"{r.product}/{r.version}")]
            if not releases:
                raise Failure(f"release {args.release!r} is not in the trusted targets metadata")
        for r in releases:
            n = verify_content(args.dir, r)
            print(f"verify_release: OK {r.product} {r.version} release {r.id.hex()}: {n} chunks, {r.length} bytes")
        print(f"verify_release: OK trust chain root v{root.version}, targets v{targets.version}, {len(releases)} release(s) verified")
        return 0
    except Failure as e:
        print(f"verify_release: FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
