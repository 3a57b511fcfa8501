#!/usr/bin/env bash
# The outsider check (run by scripts/test after `cargo test`; see section 16.3
# of docs/protocol.md). An outsider with Python, PyNaCl, blake3 and python-tuf,
# knowing only docs/protocol.md, must
#   1. recompute every test vector of docs/vectors/vectors.json,
#   2. verify releases published by the `waveguard` CLI, also across a root
#      and targets key rotation, starting from the first root, and
#   3. REFUSE tampered copies: a flipped chunk byte, a bad targets signature,
#      a truncated chunk list, and more (expiry, mix-and-match, rogue root).
# A tampered copy that verifies makes this script fail loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTSIDER=docs/outsider
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1 # keep the source tree free of __pycache__

if ! "$PY" -c 'import nacl, blake3, tuf' 2>/dev/null; then
  echo "outsider: PyNaCl, blake3 and python-tuf are needed: $PY -m pip install -r $OUTSIDER/requirements.txt" >&2
  exit 1
fi

echo "== outsider: building the CLI"
cargo build --quiet -p waveguard-agent
WG="${CARGO_TARGET_DIR:-target}/debug/waveguard"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0

pass() {
  passed=$((passed + 1))
  echo "ok: $1"
}

echo "== outsider: test vectors"
"$PY" "$OUTSIDER/verify_vectors.py"
pass "every vector recomputed from the spec"

echo "== outsider: publishing releases with the CLI"
keys="$work/keys"
mkdir -p "$keys"
for role in root root2 targets targets2 snapshot timestamp operator; do
  "$WG" keygen --out "$keys/$role.json" >/dev/null
done
repo="$work/repo"
"$WG" root init --out "$repo" \
  --root-key "$keys/root.json" --root-threshold 1 \
  --targets-key "$keys/targets.json" --targets-threshold 1 \
  --snapshot-key "$keys/snapshot.json" --timestamp-key "$keys/timestamp.json" \
  --operator-key "$keys/operator.json" --operator-threshold 1 >/dev/null
trusted_root="$work/trusted-root.json"
cp "$repo/metadata/1.root.json" "$trusted_root"
"$PY" -c 'import os, sys; open(sys.argv[1], "wb").write(os.urandom(3 * 1024 * 1024 + 12345))' "$work/v1.bin"
"$WG" publish "$work/v1.bin" --repo "$repo" --product acme-sensor --version 7.11.0 \
  --key "$keys/targets.json" --key "$keys/snapshot.json" --key "$keys/timestamp.json" \
  --chunk-avg 64KiB >/dev/null

verify() {
  "$PY" "$OUTSIDER/verify_release.py" "$1" --root "$trusted_root" "${@:2}"
}

echo "== outsider: verifying the published release"
verify "$repo"
pass "the published release verifies"
"$WG" verify "$repo" --root "$trusted_root" >/dev/null
pass "the CLI agrees"
cp "$repo/metadata/timestamp.json" "$work/timestamp-v1.json"

echo "== outsider: rotating the root and targets keys, then publishing a second version"
"$WG" root rotate --repo "$repo" --sign-old "$keys/root.json" --sign-new "$keys/root2.json" \
  --root-key "$keys/root2.json" --targets-key "$keys/targets2.json" >/dev/null
# The second version changes 100 bytes in the middle, so most chunks are shared.
"$PY" -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2 : len(b) // 2 + 100] = bytes(100); open(sys.argv[2], "wb").write(b)' \
  "$work/v1.bin" "$work/v2.bin"
"$WG" publish "$work/v2.bin" --repo "$repo" --product acme-sensor --version 7.12.0 \
  --key "$keys/targets2.json" --key "$keys/snapshot.json" --key "$keys/timestamp.json" \
  --chunk-avg 64KiB >/dev/null
out=$(verify "$repo")
echo "$out"
if ! grep -Eq "root v2, targets v[0-9]+, 2 release\(s\) verified" <<<"$out"; then
  echo "outsider: FAILED: expected both releases verified under root v2" >&2
  exit 1
fi
pass "both releases verify from the original root, through the rotation"
"$WG" verify "$repo" --root "$trusted_root" >/dev/null
pass "the CLI agrees"

# Each case copies the release, damages the copy with a shell snippet ($copy is
# the copy's path), and requires verify_release.py to fail with a message
# matching a pattern, so a failure for the wrong reason is noticed too.
refuse() {
  local name=$1 damage=$2 pattern=$3
  local copy="$work/tampered-$passed"
  rm -rf "$copy"
  cp -r "$repo" "$copy"
  copy="$copy" bash -c "set -euo pipefail; $damage"
  local out rc=0
  out=$(verify "$copy" "${@:4}" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$out" >&2
    echo "outsider: FAILED: the tampered copy ($name) was ACCEPTED by verify_release.py" >&2
    exit 1
  fi
  if ! grep -Eq "$pattern" <<<"$out"; then
    echo "$out" >&2
    echo "outsider: FAILED: $name was refused, but not with a message matching /$pattern/" >&2
    exit 1
  fi
  pass "$name is refused: $(grep FAILED <<<"$out" | head -1 | cut -c1-160)"
}

first_chunk='$(ls "$copy/chunks" | head -1)'
flip='import sys; p, at = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, "rb").read()); b[at % len(b)] ^= 1; open(p, "wb").write(b)'

echo "== outsider: tampered copies must be refused"
refuse "a flipped byte in a chunk" \
  "f=$first_chunk; $PY -c '$flip' \"\$copy/chunks/\$f\" 1000" \
  "chunk [0-9]+ \([0-9a-f]{64}\) .* hashes to"
refuse "a truncated chunk file" \
  "f=$first_chunk; truncate -s -1 \"\$copy/chunks/\$f\"" \
  "chunk [0-9]+ .* bytes, expected"
refuse "a deleted chunk" \
  "rm \"\$copy/chunks/\"$first_chunk" \
  "chunk [0-9]+ .* is missing"
refuse "a truncated chunk list" \
  "f=\$(ls \"\$copy\"/chunklists/*.wgcl | head -1); truncate -s -36 \"\$f\"" \
  "chunk list of .* bytes, the release says"
refuse "a bad targets signature" \
  "$PY '$OUTSIDER/tamper.py' bad-signature \"\$copy/metadata/targets.json\"" \
  "targets metadata"
refuse "a targets signature in uppercase hex" \
  "$PY '$OUTSIDER/tamper.py' upper-signature \"\$copy/metadata/targets.json\"" \
  "targets metadata is refused by the envelope rules .* not lowercase hex"
refuse "a bad targets signature under valid snapshot and timestamp pins" \
  "$PY '$OUTSIDER/tamper.py' resign-pins \"\$copy\" '$keys/snapshot.json' '$keys/timestamp.json'" \
  "targets metadata: not signed by the targets role"
refuse "changed targets content" \
  "$PY '$OUTSIDER/tamper.py' edit-targets \"\$copy/metadata/targets.json\"" \
  "targets metadata has blake3"
refuse "an older timestamp (mix-and-match)" \
  "cp '$work/timestamp-v1.json' \"\$copy/metadata/timestamp.json\"" \
  "snapshot metadata (is v[0-9]+, timestamp metadata names v[0-9]+|has blake3 [0-9a-f]+, timestamp metadata says)"
in_8_days=$("$PY" -c 'import time; print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8 * 86400)))')
refuse "an expired timestamp (7 days by default)" \
  "true" \
  "timestamp metadata v[0-9]+ expired at" --at "$in_8_days"
refuse "metadata used after the root expired" \
  "true" \
  "root .* expired at" --at 2999-01-01T00:00:00Z
refuse "a root rotation signed only by the new root key" \
  "$PY '$OUTSIDER/tamper.py' rogue-root \"\$copy/metadata\"" \
  "root v3 .* not signed by the root role of root v2"

echo "outsider: $passed passed, 0 failed"
