"""waveguard protocol primitives, written from docs/protocol.md alone.

This module is the outsider's implementation: it uses only the Python standard
library, PyNaCl (ed25519) and the `blake3` package, never the Rust code, so
that agreement with the Rust implementation shows the spec is complete.
Section numbers refer to docs/protocol.md.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
import struct
import time
import unicodedata

import blake3
import nacl.exceptions
import nacl.signing

# --- Section 3: identities -------------------------------------------------

PEER_ID_ED25519_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
RELEASE_ID_CONTEXT = "waveguard 2026-11 release-id v1"
WAVE_CONTEXT = "waveguard 2026-11 wave-bucket v1"
REPORT_CONTEXT = "waveguard 2026-12 report-sample v1"
B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58btc(data: bytes) -> str:
    """Bitcoin base58 (leading zero bytes become '1')."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58_ALPHABET[r] + out
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + out


def peer_id_bytes(node_id: bytes) -> bytes:
    """The libp2p PeerId of an ed25519 node key (section 3.2)."""
    assert len(node_id) == 32
    return PEER_ID_ED25519_PREFIX + node_id


def peer_id(node_id: bytes) -> str:
    return base58btc(peer_id_bytes(node_id))


def derive_key(context: str, data: bytes) -> bytes:
    """blake3 in derive_key mode with a context string."""
    return blake3.blake3(data, derive_key_context=context).digest()


def release_id(product: str, version: str, artifact_blake3: bytes) -> bytes:
    """Section 3.3: blake3 derive_key over product 0x00 version 0x00 hash."""
    return derive_key(
        RELEASE_ID_CONTEXT,
        product.encode() + b"\x00" + version.encode() + b"\x00" + artifact_blake3,
    )


# --- Section 5: canonical JSON and the signed envelope ------------------------


def _cjson_string(s: str) -> bytes:
    s = unicodedata.normalize("NFC", s)
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def canonical_json(value) -> bytes:
    """OLPC canonical JSON as section 5.1 defines it."""
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        raise ValueError("canonical JSON has no floats")
    if isinstance(value, str):
        return _cjson_string(value)
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(canonical_json(v) for v in value) + b"]"
    if isinstance(value, dict):
        items = sorted((_cjson_string(k), canonical_json(v)) for k, v in value.items())
        return b"{" + b",".join(k + b":" + v for k, v in items) + b"}"
    raise TypeError(f"no canonical JSON for {type(value).__name__}")


def tuf_public_key(public: bytes) -> dict:
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.hex()}}


def key_id(public: bytes) -> str:
    """Section 4: lowercase hex SHA-256 of the key's canonical JSON."""
    return hashlib.sha256(canonical_json(tuf_public_key(public))).hexdigest()


def signing_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


def sign_envelope(signed: dict, seeds: list[bytes]) -> bytes:
    """A signed envelope (section 5.2) as canonical JSON bytes."""
    message = canonical_json(signed)
    sigs = []
    for seed in seeds:
        sk = signing_key(seed)
        sigs.append({"keyid": key_id(bytes(sk.verify_key)), "sig": sk.sign(message).signature.hex()})
    return canonical_json({"signed": signed, "signatures": sigs})


_LOWER_HEX = re.compile(r"[0-9a-f]*")


class Refused(ValueError):
    """A document or frame a reader must refuse; `step` names the rule (sections 5.2, 12.1)."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


def read_envelope(raw: bytes) -> dict:
    """Section 5.2, steps 2 to 6: parse an envelope as a reader must (the size
    limit, step 1, depends on the document kind and is the caller's)."""
    try:
        env = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refused("json", f"not JSON: {e}") from None
    sigs = env.get("signatures") if isinstance(env, dict) else None
    if not isinstance(env, dict) or not isinstance(env.get("signed"), dict) or not isinstance(sigs, list):
        raise Refused("json", "not a signed envelope")
    if any(not isinstance(s, dict) or not isinstance(s.get("keyid"), str) or not isinstance(s.get("sig"), str) for s in sigs):
        raise Refused("json", "a signature entry lacks a keyid or sig string")
    if len(sigs) > MAX_SIGNATURES:
        raise Refused("too-many-signatures", f"{len(sigs)} signatures, over the limit of {MAX_SIGNATURES}")
    try:
        canonical = canonical_json(env["signed"])
    except (ValueError, TypeError) as e:
        raise Refused("not-canonical", str(e)) from None
    try:
        back = json.loads(canonical)  # strict: raw control characters are not JSON
    except (ValueError, UnicodeDecodeError):
        back = None
    if back != env["signed"]:
        raise Refused("not-normalised", "the canonical form of signed does not read back as the value received")
    for s in sigs:
        if not _LOWER_HEX.fullmatch(s["keyid"]) or not _LOWER_HEX.fullmatch(s["sig"]):
            raise Refused("bad-signature-encoding", f"keyid {s['keyid'][:80]!r} or its sig is not lowercase hex")
    return env


def verify_signature(public: bytes, message: bytes, sig_hex: str) -> bool:
    if len(sig_hex) != 128 or not re.fullmatch(r"[0-9a-fA-F]{128}", sig_hex):
        return False
    try:
        nacl.signing.VerifyKey(public).verify(message, bytes.fromhex(sig_hex))
        return True
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False


def count_valid_signatures(envelope: dict, keyids: list[str], keys: dict) -> int:
    """Section 5.3: distinct listed key IDs with a valid signature."""
    message = canonical_json(envelope["signed"])
    allowed = set(keyids)
    seen = set()
    for s in envelope.get("signatures", []):
        kid = s.get("keyid")
        if kid not in allowed or kid in seen or kid not in keys:
            continue
        key = keys[kid]
        if key.get("keytype") != "ed25519" or key.get("scheme") != "ed25519":
            continue
        public = key["keyval"]["public"]
        if not re.fullmatch(r"[0-9a-f]{64}", public) or key_id(bytes.fromhex(public)) != kid:
            continue
        if verify_signature(bytes.fromhex(public), message, s.get("sig", "")):
            seen.add(kid)
    return len(seen)


# --- Section 5.4: time ---------------------------------------------------------

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def parse_time(text: str) -> int:
    """A TUF time string to milliseconds since the epoch."""
    if not _TIME_RE.match(text):
        raise ValueError(f"time {text!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    secs = calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    if secs < 0:
        raise ValueError(f"time {text!r} is before 1970")
    return secs * 1000


def format_time(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(millis // 1000))


# --- Section 8: chunk lists and FastCDC ----------------------------------------

CHUNK_LIST_MAGIC = b"WGCL"
CHUNK_LIST_HEADER_LEN = 20
CHUNK_LIST_ENTRY_LEN = 36


def encode_chunk_list(chunks: list[tuple[int, bytes]]) -> bytes:
    """Section 8.3: header then (length u32 BE, blake3) per chunk."""
    total = sum(length for length, _ in chunks)
    out = CHUNK_LIST_MAGIC + bytes([1, 0, 0, 0]) + struct.pack(">IQ", len(chunks), total)
    for length, digest in chunks:
        out += struct.pack(">I", length) + digest
    return out


def decode_chunk_list(data: bytes, max_chunk: int) -> tuple[int, list[tuple[int, bytes]]]:
    """Returns (artifact length, [(length, blake3)]); raises ValueError on any defect."""
    if len(data) < CHUNK_LIST_HEADER_LEN:
        raise ValueError("chunk list is shorter than its 20-byte header")
    if data[:4] != CHUNK_LIST_MAGIC:
        raise ValueError("chunk list magic is not WGCL")
    if data[4:8] != bytes([1, 0, 0, 0]):
        raise ValueError(f"chunk list format version {data[4]} is unknown")
    count, total = struct.unpack(">IQ", data[8:20])
    if count > MAX_CHUNKS_PER_RELEASE:
        raise ValueError(f"chunk list names {count} chunks, over the limit of {MAX_CHUNKS_PER_RELEASE}")
    if len(data) != CHUNK_LIST_HEADER_LEN + CHUNK_LIST_ENTRY_LEN * count:
        raise ValueError(f"chunk list is {len(data)} bytes, {count} chunks need {20 + 36 * count}")
    chunks = []
    for i in range(count):
        at = CHUNK_LIST_HEADER_LEN + CHUNK_LIST_ENTRY_LEN * i
        (length,) = struct.unpack(">I", data[at : at + 4])
        if length == 0 or length > max_chunk:
            raise ValueError(f"chunk {i} has length {length}, outside 1..={max_chunk}")
        chunks.append((length, data[at + 4 : at + 36]))
    if sum(length for length, _ in chunks) != total:
        raise ValueError("chunk lengths do not add up to the artifact length in the header")
    return total, chunks


# FastCDC 2020 (section 8.1). GEAR[i] = first 8 bytes (big-endian) of MD5 of 64 bytes of value i.
_M64 = (1 << 64) - 1
GEAR = [int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)]
GEAR_LS = [(g << 1) & _M64 for g in GEAR]
MASKS = [
    0, 0, 0, 0, 0,
    0x0000000001804110, 0x0000000001803110, 0x0000000018035100, 0x0000001800035300,
    0x0000019000353000, 0x0000590003530000, 0x0000D90003530000, 0x0000D90103530000,
    0x0000D90303530000, 0x0000D90313530000, 0x0000D90F03530000, 0x0000D90303537000,
    0x0000D90703537000, 0x0000D90707537000, 0x0000D91707537000, 0x0000D91747537000,
    0x0000D91767537000, 0x0000D93767537000, 0x0000D93777537000, 0x0000D93777577000,
    0x0000DB3777577000,
]


def fastcdc_cut(src: bytes, start: int, end: int, mn: int, avg: int, mx: int, mask_s: int, mask_l: int) -> int:
    """Length of the next chunk of src[start:end]."""
    remaining = end - start
    if remaining <= mn:
        return remaining
    center = avg
    if remaining > mx:
        remaining = mx
    elif remaining < center:
        center = remaining
    mask_s_ls, mask_l_ls = mask_s << 1, mask_l << 1
    index = mn // 2
    h = 0
    for limit, m, m_ls in ((center // 2, mask_s, mask_s_ls), (remaining // 2, mask_l, mask_l_ls)):
        while index < limit:
            a = index * 2
            h = ((h << 2) + GEAR_LS[src[start + a]]) & _M64
            if h & m_ls == 0:
                return a
            h = (h + GEAR[src[start + a + 1]]) & _M64
            if h & m == 0:
                return a + 1
            index += 1
    return remaining


def fastcdc(data: bytes, mn: int, avg: int, mx: int) -> list[int]:
    """Chunk lengths of data with normalization level 1."""
    bits = round(math.log2(avg))
    mask_s, mask_l = MASKS[bits + 1], MASKS[bits - 1]
    lengths, pos = [], 0
    while pos < len(data):
        n = fastcdc_cut(data, pos, len(data), mn, avg, mx, mask_s, mask_l)
        lengths.append(n)
        pos += n
    return lengths


# --- Section 9: waves and schedule ---------------------------------------------

PPM = 1_000_000


def bucket(release: bytes, node: bytes) -> int:
    return int.from_bytes(derive_key(WAVE_CONTEXT, release + node)[:8], "big")


def report_bucket(release: bytes, node: bytes) -> int:
    return int.from_bytes(derive_key(REPORT_CONTEXT, release + node)[:8], "big")


def in_sample(b: int, ppm: int) -> bool:
    """Section 11.1: a node reports iff its report bucket is below the share (or it is a pinned canary)."""
    return b * PPM < ppm << 64


def wave_for_bucket(cumulative_ppm: list[int], b: int) -> int:
    for i, cum in enumerate(cumulative_ppm):
        if b * PPM < cum << 64:
            return i
    return len(cumulative_ppm) - 1


def scheduled_open(start_ms: int, bakes: list[int], index: int) -> int:
    return start_ms + 1000 * sum(bakes[:index])


# --- Section 11: health statuses and the gate rule --------------------------------

HEALTH_STATUSES = ("installed", "healthy", "baked", "unhealthy", "install-failed", "rolled-back")
FAILURE_STATUSES = ("unhealthy", "install-failed", "rolled-back")


def node_condition(status: str, time_ms: int, now_ms: int, silence_seconds: int) -> str:
    """Section 11.5: how a node whose latest report has `status` and `time_ms` counts at `now_ms`.
    A `baked` report is final and never silent."""
    if status not in HEALTH_STATUSES:
        raise ValueError(f"health status {status!r} is unknown")
    if status in FAILURE_STATUSES:
        return "failed"
    if status == "baked":
        return "healthy"
    if now_ms > time_ms + 1000 * silence_seconds:
        return "silent"
    return status  # "installed" or "healthy", heard from recently


def gate(max_failure_ppm: int, min_reports: int, reporting: int, failures: int, healthy: int, baked: bool) -> str:
    """Section 11.5 on counts; `baked` is now >= scheduled_open(w + 1)."""
    if reporting >= min_reports and failures * PPM >= max_failure_ppm * reporting:
        return "failed"
    if healthy >= min_reports and baked:
        return "passed"
    return "pending"


# --- Section 12: wire (postcard) -------------------------------------------------

WIRE_VERSION = 1


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pc_bytes(b: bytes) -> bytes:
    return varint(len(b)) + b


def pc_option(b: bytes | None) -> bytes:
    return b"\x00" if b is None else b"\x01" + pc_bytes(b)


def pc_bundle(roots: list[bytes], timestamp: bytes, snapshot: bytes, targets: bytes) -> bytes:
    return varint(len(roots)) + b"".join(pc_bytes(r) for r in roots) + pc_bytes(timestamp) + pc_bytes(snapshot) + pc_bytes(targets)


def pc_signed_health(report: bytes, cert: bytes | None) -> bytes:
    return pc_bytes(report) + pc_option(cert)


def pc_signed_health_seq(reports: list[tuple[bytes, bytes | None]]) -> bytes:
    """seq<SignedHealth> (section 12.3), as in halt evidence and health sync responses."""
    return varint(len(reports)) + b"".join(pc_signed_health(r, c) for r, c in reports)


def frame(variant: int, body: bytes = b"") -> bytes:
    return bytes([WIRE_VERSION]) + varint(variant) + body


class FrameReader:
    """Reads the postcard subset of section 12.2, refusing what 12.1 refuses."""

    def __init__(self, data: bytes) -> None:
        if not data:
            raise Refused("empty", "an empty frame")
        if data[0] != WIRE_VERSION:
            raise Refused("version", f"wire version {data[0]}, this reader speaks {WIRE_VERSION}")
        self.data, self.pos = data, 1

    def raw(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise Refused("malformed", "a length runs past the end of the frame")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, bits: int) -> int:
        start, value, shift = self.pos, 0, 0
        while True:
            (b,) = self.raw(1)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= 7 * -(-bits // 7):  # at most 5 bytes for u32, 10 for u64
                raise Refused("malformed", "a varint is too long")
        if value >> bits:
            raise Refused("malformed", f"a varint does not fit {bits} bits")
        if self.data[start : self.pos] != varint(value):
            raise Refused("not-minimal", f"the varint {self.data[start:self.pos].hex()} is not the shortest form of {value}")
        return value

    def bytes(self) -> bytes:
        return self.raw(self.varint(64))

    def option_bytes(self) -> bytes | None:
        (tag,) = self.raw(1)
        if tag == 0:
            return None
        if tag == 1:
            return self.bytes()
        raise Refused("malformed", f"an Option tag is {tag}, not 0 or 1")

    def signed_health_seq(self) -> list[tuple[bytes, bytes | None]]:
        """seq<SignedHealth>: each element is read from bytes that are there, so a
        huge declared count fails on the short input before anything is reserved."""
        count = self.varint(64)
        out = []
        for _ in range(count):
            out.append((self.bytes(), self.option_bytes()))
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise Refused("trailing", f"{len(self.data) - self.pos} bytes left over")


def decode_request(data: bytes) -> tuple:
    """A Request frame (section 12.3) as (variant name, fields...)."""
    r = FrameReader(data)
    v = r.varint(32)
    if v == 0:
        out = ("Metadata",)
    elif v == 1:
        out = ("ChunkList", r.raw(32))
    elif v == 2:
        out = ("Chunk", r.raw(32), r.varint(32))
    elif v == 3:
        out = ("Have", r.raw(32), r.bytes())
    elif v == 4:
        out = ("Health", r.raw(32), r.varint(32))
    elif v == 5:
        out = ("Halt", r.raw(32))
    else:
        raise Refused("malformed", f"request variant {v} is unknown")
    r.end()
    return out


def decode_response(data: bytes) -> tuple:
    """A Response frame (section 12.3) as (variant name, fields...)."""
    r = FrameReader(data)
    v = r.varint(32)
    if v == 0:
        roots = [r.bytes() for _ in range(r.varint(64))]
        out = ("Metadata", roots, r.bytes(), r.bytes(), r.bytes())
    elif v in (1, 2):
        out = ("ChunkList" if v == 1 else "Chunk", r.bytes())
    elif v == 3:
        out = ("Have", r.bytes())
    elif v in (4, 5):
        out = ("NotFound" if v == 4 else "Busy",)
    elif v == 6:
        out = ("Health", r.signed_health_seq())
    elif v == 7:
        out = ("Halt", r.raw(32), r.varint(32), r.signed_health_seq())
    elif v == 8:
        out = ("Directive", r.bytes())
    else:
        raise Refused("malformed", f"response variant {v} is unknown")
    r.end()
    # Section 12.4: counts checked after decoding.
    if out[0] in ("Health", "Halt"):
        reports = out[-1]
        if len(reports) > MAX_EVIDENCE_REPORTS:
            raise Refused("count-too-large", f"{len(reports)} reports, over the limit of {MAX_EVIDENCE_REPORTS}")
        if len(data) > MAX_GOSSIP_BYTES:
            raise Refused("count-too-large", f"a {out[0].lower()} response of {len(data)} bytes, over {MAX_GOSSIP_BYTES}")
    if out[0] == "Directive" and len(out[1]) > MAX_DIRECTIVE_BYTES:
        raise Refused("count-too-large", f"a directive of {len(out[1])} bytes, over {MAX_DIRECTIVE_BYTES}")
    return out


# --- Section 13: limits the outsider checks -------------------------------------

MAX_CHUNKS_PER_RELEASE = 1 << 17
MAX_CHUNK_BYTES = 8 * 1024 * 1024
MAX_SIGNATURES = 64
MAX_EVIDENCE_REPORTS = 256
MAX_GOSSIP_BYTES = 1 << 20
MAX_DIRECTIVE_BYTES = 8 * 1024
