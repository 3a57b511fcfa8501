#!/usr/bin/env python3
"""Recomputes every test vector of docs/vectors/vectors.json from the spec alone.

Usage: verify_vectors.py [path/to/vectors.json]

The Rust test protocol/tests/spec_vectors.rs writes the vectors with the real
implementation; this script derives each value again with wg_spec.py (an
independent implementation of docs/protocol.md using PyNaCl, blake3 and the
standard library) from the fixed inputs the spec names, and compares. It exits
non-zero, naming every vector that differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import blake3

import wg_spec as wg

HERE = Path(__file__).resolve().parent


class Checker:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def eq(self, name: str, got, want) -> None:
        if got == want:
            self.passed += 1
        else:
            self.failed.append(f"{name}: the spec gives {got!r}, vectors.json has {want!r}")


def check_keys(c: Checker, v: dict) -> None:
    seed = bytes([0x01] * 32)
    public = bytes(wg.signing_key(seed).verify_key)
    c.eq("keys.seed_hex", seed.hex(), v["seed_hex"])
    c.eq("keys.public_hex", public.hex(), v["public_hex"])
    c.eq("keys.tuf_key_canonical", wg.canonical_json(wg.tuf_public_key(public)).decode(), v["tuf_key_canonical"])
    c.eq("keys.keyid", wg.key_id(public), v["keyid"])
    c.eq("keys.node_id_hex", public.hex(), v["node_id_hex"])
    c.eq("keys.peer_id_bytes_hex", wg.peer_id_bytes(public).hex(), v["peer_id_bytes_hex"])
    c.eq("keys.peer_id", wg.peer_id(public), v["peer_id"])


def check_canonical_json(c: Checker, v: dict) -> None:
    value = json.loads(v["input_json"])
    c.eq("canonical_json.canonical", wg.canonical_json(value).decode(), v["canonical"])


def check_time(c: Checker, v: dict) -> None:
    c.eq("time.millis", wg.parse_time(v["text"]), v["millis"])
    c.eq("time.text", wg.format_time(v["millis"]), v["text"])


def check_signed(c: Checker, v: dict, release_id: bytes) -> None:
    key1 = bytes([0x01] * 32)
    key2 = bytes([0x02] * 32)
    node = bytes(wg.signing_key(key1).verify_key)
    report = {
        "_type": "waveguard-health",
        "node": node.hex(),
        "release": release_id.hex(),
        "wave": 0,
        "status": "healthy",
        "seq": 1,
        "time": "2030-01-01T00:00:00Z",
    }
    cert = {"_type": "waveguard-fleet-cert", "node": node.hex(), "expires": "2030-01-02T00:00:00Z", "pin": "canary"}
    for name, doc, seed in (("health_report", report, key1), ("fleet_cert", cert, key2)):
        want = v[name]
        c.eq(f"signed.{name}.signing_seed_hex", seed.hex(), want["signing_seed_hex"])
        canonical = wg.canonical_json(doc)
        c.eq(f"signed.{name}.canonical_signed", canonical.decode(), want["canonical_signed"])
        sk = wg.signing_key(seed)
        c.eq(f"signed.{name}.keyid", wg.key_id(bytes(sk.verify_key)), want["keyid"])
        c.eq(f"signed.{name}.sig", sk.sign(canonical).signature.hex(), want["sig"])
        c.eq(f"signed.{name}.envelope", wg.sign_envelope(doc, [seed]).decode(), want["envelope"])
        # The envelope verifies, and a changed field breaks it.
        env = json.loads(want["envelope"])
        keys = {wg.key_id(bytes(sk.verify_key)): wg.tuf_public_key(bytes(sk.verify_key))}
        c.eq(f"signed.{name} verifies", wg.count_valid_signatures(env, list(keys), keys), 1)
        env["signed"]["node"] = "00" * 32
        c.eq(f"signed.{name} tampered is refused", wg.count_valid_signatures(env, list(keys), keys), 0)


def check_blake3(c: Checker, v: dict) -> None:
    c.eq("blake3.empty", blake3.blake3(b"").hexdigest(), v["empty"])
    c.eq("blake3.waveguard", blake3.blake3(b"waveguard").hexdigest(), v["waveguard"])


def check_chunk_list(c: Checker, v: dict) -> None:
    pieces = [p.encode() for p in v["pieces"]]
    c.eq("chunk_list.pieces", [p.decode() for p in pieces], ["hello", ", ", "world"])
    chunks = [(len(p), blake3.blake3(p).digest()) for p in pieces]
    c.eq("chunk_list.chunk_hashes", [h.hex() for _, h in chunks], v["chunk_hashes"])
    encoded = wg.encode_chunk_list(chunks)
    c.eq("chunk_list.encoded_hex", encoded.hex(), v["encoded_hex"])
    c.eq("chunk_list.encoded_blake3", blake3.blake3(encoded).hexdigest(), v["encoded_blake3"])
    total, decoded = wg.decode_chunk_list(encoded, wg.MAX_CHUNK_BYTES)
    c.eq("chunk_list decodes", (total, decoded), (12, chunks))


def check_chunking(c: Checker, v: dict) -> None:
    seed = v["input"]["xof_seed"].encode()
    c.eq("chunking.input.xof_seed", seed, b"waveguard spec vector: chunking")
    c.eq("chunking.input.length", v["input"]["length"], 300_000)
    data = blake3.blake3(seed).digest(length=300_000)
    p = v["params"]
    c.eq("chunking.params", (p["min_size"], p["avg_size"], p["max_size"]), (16_384, 32_768, 65_536))
    lengths = wg.fastcdc(data, 16_384, 32_768, 65_536)
    c.eq("chunking.chunk_lengths", lengths, v["chunk_lengths"])
    c.eq("chunking.first_chunk_blake3", blake3.blake3(data[: lengths[0]]).hexdigest(), v["first_chunk_blake3"])
    chunks, pos = [], 0
    for n in lengths:
        chunks.append((n, blake3.blake3(data[pos : pos + n]).digest()))
        pos += n
    c.eq("chunking.chunk_list_blake3", blake3.blake3(wg.encode_chunk_list(chunks)).hexdigest(), v["chunk_list_blake3"])


def vector_target() -> dict:
    """The target entry the spec's release vector uses."""
    return {
        "length": 1_048_576,
        "hashes": {"blake3": "11" * 32},
        "custom": {
            "waveguard": {
                "product": "acme-sensor",
                "version": "7.11.0",
                "chunk_list": {"length": 164, "blake3": "22" * 32, "chunks": 4},
                "chunker": {"algorithm": "fastcdc-v2020", "min_size": 262_144, "avg_size": 1_048_576, "max_size": 4_194_304},
                "rollout": {
                    "start": "2030-01-01T00:00:00Z",
                    "waves": [
                        {"name": "canary", "cumulative_ppm": 10_000, "bake_seconds": 3600},
                        {"name": "early", "cumulative_ppm": 100_000, "bake_seconds": 21_600},
                        {"name": "broad", "cumulative_ppm": 500_000, "bake_seconds": 43_200},
                        {"name": "all", "cumulative_ppm": 1_000_000, "bake_seconds": 0},
                    ],
                    "health": {"max_failure_ppm": 50_000, "min_reports": 3, "silence_seconds": 600, "heartbeat_seconds": 60},
                },
            }
        },
    }


def check_release(c: Checker, v: dict) -> bytes:
    rid = wg.release_id("acme-sensor", "7.11.0", bytes([0x11] * 32))
    c.eq("release.release_id", rid.hex(), v["release_id"])
    target = vector_target()
    c.eq("release.target", target, v["target"])
    info = target["custom"]["waveguard"]
    from_target = wg.release_id(info["product"], info["version"], bytes.fromhex(target["hashes"]["blake3"]))
    c.eq("release.target_release_id", from_target.hex(), v["target_release_id"])
    c.eq("release.chunk_list.length rule", 20 + 36 * info["chunk_list"]["chunks"], info["chunk_list"]["length"])
    return rid


def check_waves(c: Checker, v: dict, rid: bytes) -> None:
    rollout = vector_target()["custom"]["waveguard"]["rollout"]
    cums = [w["cumulative_ppm"] for w in rollout["waves"]]
    bakes = [w["bake_seconds"] for w in rollout["waves"]]
    names = [w["name"] for w in rollout["waves"]]
    c.eq("waves.release_id", rid.hex(), v["release_id"])
    c.eq("waves.waves_ppm", cums, v["waves_ppm"])
    for i, (node_hex, want) in enumerate(zip(("00" * 32, "01" * 32, "ff" * 32), v["nodes"])):
        b = wg.bucket(rid, bytes.fromhex(node_hex))
        w = wg.wave_for_bucket(cums, b)
        c.eq(f"waves.nodes[{i}].node_id", node_hex, want["node_id"])
        c.eq(f"waves.nodes[{i}].bucket", b, want["bucket"])
        c.eq(f"waves.nodes[{i}].bucket_hex", f"{b:016x}", want["bucket_hex"])
        c.eq(f"waves.nodes[{i}].wave", w, want["wave"])
        c.eq(f"waves.nodes[{i}].wave_name", names[w], want["wave_name"])
        c.eq(f"waves.nodes[{i}].wave_pin_canary", 0, want["wave_pin_canary"])
        c.eq(f"waves.nodes[{i}].wave_pin_last", len(cums) - 1, want["wave_pin_last"])
        rb = wg.report_bucket(rid, bytes.fromhex(node_hex))
        c.eq(f"waves.nodes[{i}].report_bucket", rb, want["report_bucket"])
        c.eq(f"waves.nodes[{i}].report_bucket_hex", f"{rb:016x}", want["report_bucket_hex"])
        c.eq(f"waves.nodes[{i}].in_report_sample", wg.in_sample(rb, v["report_ppm"]), want["in_report_sample"])
    start = wg.parse_time(rollout["start"])
    opens = [wg.format_time(wg.scheduled_open(start, bakes, i)) for i in range(len(cums))]
    c.eq("waves.scheduled_open", opens, v["scheduled_open"])
    c.eq("waves.end", wg.format_time(wg.scheduled_open(start, bakes, len(cums))), v["end"])
    for i, want in enumerate(v.get("boundaries", [])):
        c.eq(f"waves.boundaries[{i}]", wg.wave_for_bucket(cums, want["bucket"]), want["wave"])


def bitfield(n: int, ones: list[int]) -> bytes:
    out = bytearray((n + 7) // 8)
    for i in ones:
        out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def check_wire(c: Checker, v: dict, rid: bytes, signed: dict) -> None:
    bits = bitfield(10, [0, 3, 9])
    c.eq("wire.bitfield_10_bits_0_3_9_hex", bits.hex(), v["bitfield_10_bits_0_3_9_hex"])
    pieces = [b"hello", b", ", b"world"]
    chunk_list = wg.encode_chunk_list([(len(p), blake3.blake3(p).digest()) for p in pieces])
    bundle = wg.pc_bundle([b"R1", b"R2"], b"T", b"S", b"X")
    report = signed["health_report"]["envelope"].encode()
    expected = {
        "request_metadata": wg.frame(0),
        "request_chunk_list": wg.frame(1, rid),
        "request_chunk_300": wg.frame(2, rid + wg.varint(300)),
        "request_have": wg.frame(3, rid + wg.pc_bytes(bits)),
        "request_health": wg.frame(4, rid + wg.varint(2)),
        "request_halt": wg.frame(5, rid),
        "response_metadata": wg.frame(0, bundle),
        "response_chunk_list": wg.frame(1, wg.pc_bytes(chunk_list)),
        "response_chunk_hello": wg.frame(2, wg.pc_bytes(b"hello")),
        "response_have": wg.frame(3, wg.pc_bytes(bits)),
        "response_not_found": wg.frame(4),
        "response_busy": wg.frame(5),
        "response_health": wg.frame(6, wg.pc_signed_health_seq([(report, None)])),
        "response_halt": wg.frame(7, rid + wg.varint(1) + wg.varint(1) + wg.pc_signed_health(b"{}", b"[]")),
        "response_directive": wg.frame(8, wg.pc_bytes(b"{}")),
        "gossip_metadata": wg.frame(0, bundle),
        "gossip_health": wg.frame(1, wg.pc_signed_health(report, None)),
        "gossip_halt": wg.frame(2, rid + wg.varint(1) + wg.varint(1) + wg.pc_signed_health(b"{}", b"[]")),
        "gossip_directive": wg.frame(3, wg.pc_bytes(b"{}")),
    }
    got_names = sorted(v["messages"])
    c.eq("wire.messages (names)", sorted(expected), got_names)
    for name, data in expected.items():
        c.eq(f"wire.messages.{name}", data.hex(), v["messages"].get(name))


def check_wire_decodes(c: Checker, v: dict, rid: bytes, signed: dict) -> None:
    """Every request and response vector reads back (sections 12.1, 12.2) as its message."""
    bits = bitfield(10, [0, 3, 9])
    report = signed["health_report"]["envelope"].encode()
    pieces = [b"hello", b", ", b"world"]
    chunk_list = wg.encode_chunk_list([(len(p), blake3.blake3(p).digest()) for p in pieces])
    expected = {
        "request_metadata": ("Metadata",),
        "request_chunk_list": ("ChunkList", rid),
        "request_chunk_300": ("Chunk", rid, 300),
        "request_have": ("Have", rid, bits),
        "request_health": ("Health", rid, 2),
        "request_halt": ("Halt", rid),
        "response_metadata": ("Metadata", [b"R1", b"R2"], b"T", b"S", b"X"),
        "response_chunk_list": ("ChunkList", chunk_list),
        "response_chunk_hello": ("Chunk", b"hello"),
        "response_have": ("Have", bits),
        "response_not_found": ("NotFound",),
        "response_busy": ("Busy",),
        "response_health": ("Health", [(report, None)]),
        "response_halt": ("Halt", rid, 1, [(b"{}", b"[]")]),
        "response_directive": ("Directive", b"{}"),
    }
    for name, want in expected.items():
        data = bytes.fromhex(v["messages"].get(name, ""))
        decode = wg.decode_request if name.startswith("request_") else wg.decode_response
        try:
            got = decode(data)
        except wg.Refused as e:
            got = f"refused: {e}"
        c.eq(f"wire.messages.{name} decodes", got, want)
    # The report a health sync response carries verifies as a gossiped one would (11.2, 11.8).
    try:
        (_, [(synced, cert)]) = wg.decode_response(bytes.fromhex(v["messages"].get("response_health", "")))
        env = wg.read_envelope(synced)
        signed_doc = env["signed"]
        public = bytes.fromhex(signed_doc["node"])
        keys = {wg.key_id(public): wg.tuf_public_key(public)}
        ok = (
            cert is None
            and signed_doc["_type"] == "waveguard-health"
            and signed_doc["release"] == rid.hex()
            and signed_doc["status"] in wg.HEALTH_STATUSES
            and wg.count_valid_signatures(env, list(keys), keys) == 1
        )
    except (wg.Refused, ValueError, KeyError) as e:
        ok = f"refused: {e}"
    c.eq("wire.messages.response_health carries a report signed by its node", ok, True)


def check_refused(c: Checker, v: dict, signed: dict, rid: bytes) -> None:
    """Section 5.2 and 12.1: what a reader must refuse, and at which step."""
    report = signed["health_report"]["envelope"]
    sig = json.loads(report)["signatures"][0]["sig"]
    want_json = {
        "non-NFC text": '{"signatures":[],"signed":{"p":"cafe\\u0301"}}',
        "control character": '{"signatures":[],"signed":{"p":"a\\nb"}}',
        "uppercase signature": report.replace(sig, sig.upper()),
        "envelope as an array": '[{"p":1},[]]',
        "signature as an array": json.dumps(
            {"signatures": [[json.loads(report)["signatures"][0]["keyid"], sig]], "signed": {"p": 1}},
            separators=(",", ":"),
        ),
    }
    names = [e["name"] for e in v["envelopes"]]
    c.eq("refused.envelopes (names)", names, list(want_json))
    for e in v["envelopes"]:
        c.eq(f"refused.envelopes[{e['name']}].json", e["json"], want_json.get(e["name"]))
        try:
            wg.read_envelope(e["json"].encode())
            step = "accepted"
        except wg.Refused as r:
            step = r.step
        c.eq(f"refused.envelopes[{e['name']}].refused_at", step, e["refused_at"])
    want_frames = {
        "request_metadata_padded_variant": ("request", bytes([wg.WIRE_VERSION, 0x80, 0x00])),
        "request_chunk_padded_index": ("request", wg.frame(2, rid + bytes([0x80, 0x00]))),
        "response_chunk_padded_length": ("response", wg.frame(2, bytes([0x85, 0x00]) + b"hello")),
        "response_health_257_reports": ("response", wg.frame(6, wg.pc_signed_health_seq([(b"{}", None)] * 257))),
    }
    c.eq("refused.frames (names)", [f["name"] for f in v["frames"]], list(want_frames))
    for f in v["frames"]:
        kind, data = want_frames.get(f["name"], ("?", b""))
        c.eq(f"refused.frames[{f['name']}].kind", kind, f["kind"])
        c.eq(f"refused.frames[{f['name']}].hex", data.hex(), f["hex"])
        decode = wg.decode_request if kind == "request" else wg.decode_response
        try:
            decode(data)
            step = "accepted"
        except wg.Refused as r:
            step = r.step
        c.eq(f"refused.frames[{f['name']}].refused_at", step, f["refused_at"])


def check_directive(c: Checker, v: dict, rid: bytes) -> None:
    seed = bytes([0x02] * 32)
    doc = {
        "_type": "waveguard-directive",
        "action": "halt",
        "release": rid.hex(),
        "seq": 7,
        "expires": "2030-01-02T00:00:00Z",
        "reason": "canary crash loop, see INC-1234",
    }
    c.eq("directive.signing_seed_hex", seed.hex(), v["signing_seed_hex"])
    c.eq("directive.canonical_signed", wg.canonical_json(doc).decode(), v["canonical_signed"])
    c.eq("directive.sig", wg.signing_key(seed).sign(wg.canonical_json(doc)).signature.hex(), v["sig"])
    c.eq("directive.envelope", wg.sign_envelope(doc, [seed]).decode(), v["envelope"])


def check_gate(c: Checker, v: dict) -> None:
    for i, d in enumerate(v["decisions"]):
        got = wg.gate(d["max_failure_ppm"], d["min_reports"], d["reporting"], d["failures"], d["healthy"], d["baked"])
        c.eq(f"gate.decisions[{i}]", got, d["gate"])
    silence = v["silence_seconds"]
    for i, s in enumerate(v["silence"]):
        time = wg.parse_time(s["report_time"])
        now = time + s["now_millis_after"]
        c.eq(f"gate.silence[{i}]", wg.node_condition("healthy", time, now, silence), s["condition"])
    # Each status just before and after the silence boundary and a day on (section 11.5).
    offsets = [600_000, 600_001, 86_400_000]
    cases = [(status, ms) for status in wg.HEALTH_STATUSES for ms in offsets]
    conditions = v.get("conditions", [])
    c.eq("gate.conditions (cases)", [(s["status"], s["now_millis_after"]) for s in conditions], cases)
    for s in conditions:
        time = wg.parse_time(s["report_time"])
        now = time + s["now_millis_after"]
        got = wg.node_condition(s["status"], time, now, silence)
        c.eq(f"gate.conditions[{s['status']} +{s['now_millis_after']} ms]", got, s["condition"])
    # The point of `baked`: a wave whose nodes all sent their final report a day
    # ago still passes (with 3 such nodes, min_reports 3, baked by the schedule),
    # where the same nodes' last heartbeats would fail it as silent.
    day = 86_400_000
    for status, want in (("baked", "passed"), ("healthy", "failed")):
        counted = [wg.node_condition(status, 0, day, silence) for _ in range(3)]
        failures = sum(1 for x in counted if x in ("failed", "silent"))
        healthy = counted.count("healthy")
        c.eq(f"gate: 3 nodes whose latest report is {status!r} a day old", wg.gate(200_000, 3, 3, failures, healthy, True), want)


def check_tuf(c: Checker, v: dict) -> None:
    """Section 6: the documents from the spec's rules, and python-tuf reads them the same way."""
    from tuf.api.metadata import Metadata

    seed1, seed2 = bytes([0x01] * 32), bytes([0x02] * 32)
    pub1, pub2 = (bytes(wg.signing_key(s).verify_key) for s in (seed1, seed2))
    kid1, kid2 = wg.key_id(pub1), wg.key_id(pub2)
    role = {"keyids": [kid1], "threshold": 1}
    root = {
        "_type": "root",
        "spec_version": "1.0.31",
        "version": 1,
        "expires": "2031-01-01T00:00:00Z",
        "keys": {kid1: wg.tuf_public_key(pub1), kid2: wg.tuf_public_key(pub2)},
        "roles": {name: role for name in ("root", "targets", "snapshot", "timestamp")},
        "consistent_snapshot": False,
        "waveguard": {"operator": {"keyids": [kid2], "threshold": 1}},
    }
    root_bytes = wg.sign_envelope(root, [seed1])
    c.eq("tuf.root", root_bytes.decode(), v["root"])
    targets = {
        "_type": "targets",
        "spec_version": "1.0.31",
        "version": 1,
        "expires": "2030-04-01T00:00:00Z",
        "targets": {"acme-sensor-7.11.0.bin": vector_target()},
    }
    targets_bytes = wg.sign_envelope(targets, [seed1])
    c.eq("tuf.targets", targets_bytes.decode(), v["targets"])

    def pin(name: str, data: bytes) -> dict:
        return {name: {"version": 1, "length": len(data), "hashes": {"blake3": blake3.blake3(data).hexdigest()}}}

    snapshot = {"_type": "snapshot", "spec_version": "1.0.31", "version": 1, "expires": "2030-01-08T00:00:00Z",
                "meta": pin("targets.json", targets_bytes)}
    snapshot_bytes = wg.sign_envelope(snapshot, [seed1])
    c.eq("tuf.snapshot", snapshot_bytes.decode(), v["snapshot"])
    timestamp = {"_type": "timestamp", "spec_version": "1.0.31", "version": 1, "expires": "2030-01-02T00:00:00Z",
                 "meta": pin("snapshot.json", snapshot_bytes)}
    c.eq("tuf.timestamp", wg.sign_envelope(timestamp, [seed1]).decode(), v["timestamp"])
    # python-tuf parses the vector documents, re-serialises them to the same
    # signed bytes, and finds every one signed to threshold.
    docs = {name: Metadata.from_bytes(v[name].encode()) for name in ("root", "timestamp", "snapshot", "targets")}
    for name, md in docs.items():
        c.eq(f"tuf.{name} python-tuf signed_bytes", md.signed_bytes, wg.canonical_json(json.loads(v[name])["signed"]))
        try:
            docs["root"].signed.verify_delegate(name, md.signed_bytes, md.signatures)
            ok = True
        except Exception as e:  # noqa: BLE001 - any failure is a mismatch
            ok = str(e)
        c.eq(f"tuf.{name} python-tuf verify_delegate", ok, True)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "vectors" / "vectors.json"
    vectors = json.loads(path.read_text(encoding="utf-8"))
    c = Checker()
    check_keys(c, vectors["keys"])
    check_canonical_json(c, vectors["canonical_json"])
    check_time(c, vectors["time"])
    check_blake3(c, vectors["blake3"])
    check_chunk_list(c, vectors["chunk_list"])
    check_chunking(c, vectors["chunking"])
    rid = check_release(c, vectors["release"])
    check_signed(c, vectors["signed"], rid)
    check_waves(c, vectors["waves"], rid)
    check_wire(c, vectors["wire"], rid, vectors["signed"])
    check_wire_decodes(c, vectors["wire"], rid, vectors["signed"])
    check_refused(c, vectors["refused"], vectors["signed"], rid)
    check_directive(c, vectors["directive"], rid)
    check_gate(c, vectors["gate"])
    check_tuf(c, vectors["tuf"])
    checked = {"about", "keys", "canonical_json", "time", "blake3", "chunk_list", "chunking", "release", "signed",
               "waves", "wire", "directive", "gate", "tuf", "refused"}
    for extra in sorted(set(vectors) - checked):
        c.failed.append(f"{extra}: vectors.json has a section this script does not check yet")
    for line in c.failed:
        print(f"MISMATCH {line}", file=sys.stderr)
    print(f"verify_vectors: {c.passed} passed, {len(c.failed)} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
