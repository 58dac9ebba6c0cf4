#!/usr/bin/env bash
# Packs the wheels a lent GPU machine lacks for a real `vidlake index` run (Ray, pylance,
# lance-ray, PyAV, decord, pycocotools, the text encoder, transformers of the version tested
# here, ...) into .gpuwhl/part1 .. partN, each small enough to travel with the working tree in
# one device call (64 MiB a call). Run HERE, in the repository (needs .venv and PyPI):
#
#   bash bench/gpu_wheels.sh
#
# It prints the parts and the device calls to make; bench/gpu_pipeline.sh's header has them too.
#
# Which wheels: the runtime dependency closure of vidlake (its pyproject dependencies, with
# ray[data,serve]'s extras, resolved in .venv), at .venv's versions, less the packages the
# device image already has (/work/.library/device/KINDS.md, "Python packages already there";
# their own dependencies are the image's business) except transformers, carried at .venv's
# version (the device has 5.17). Downloaded for CPython 3.12 x86_64 (the device's python3).
#
# Packing: the wheels, largest first, as one byte stream cut into N equal parts; a wheel that
# straddles a cut is split into chunks (WHEEL.chunk0, WHEEL.chunk1, ...). Every part holds
# MANIFEST (wheel, size, sha256, its chunks) and a marker PART.k; gpu_pipeline.sh checks all
# of them before it reassembles and installs.
#
# Environment: PY (python with the project's deps, default .venv/bin/python), KINDS (the
# device's package list), MARGIN_MIB (headroom per call, default 2), PLATFORMS (pip
# --platform tags, space separated).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PY:-.venv/bin/python}
KINDS=${KINDS:-/work/.library/device/KINDS.md}
MARGIN_MIB=${MARGIN_MIB:-2}
PLATFORMS=${PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64}
DEST=.gpuwhl
NEW=$DEST/new  # staging, inside the ignored folder

[ -x "$PY" ] || { echo "gpu_wheels.sh: no $PY (make .venv first: README.md, Install)"; exit 2; }
[ -f "$KINDS" ] || { echo "gpu_wheels.sh: no $KINDS (the device's package list)"; exit 2; }
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.gpuwhl/' "$exclude" 2>/dev/null || echo '/.gpuwhl/' >>"$exclude"

rm -rf "$NEW"
mkdir -p "$NEW/wheels"

# 1. name==version of every wheel to carry
"$PY" - "$KINDS" >"$NEW/requirements.txt" <<'EOF'
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

kinds = open(sys.argv[1]).read().split("## Python packages already there", 1)[1]
listed = kinds.split("Packages:", 1)[1].split("\n\n", 1)[0]
device = {canon(x.strip().rstrip(".")) for x in listed.split(",") if x.strip()}
force = {"transformers"}  # the version tested here, not the device's
env = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython"}
dists = {canon(d.metadata["Name"]): d for d in metadata.distributions()}
carry, seen = {}, set()


def visit(name, extras):
    n = canon(name)
    if (n in device and n not in force) or (n, frozenset(extras)) in seen:
        return
    seen.add((n, frozenset(extras)))
    if n not in dists:
        sys.exit(f"gpu_wheels.sh: {name} is needed but not installed in .venv")
    if n != "vidlake":
        carry[n] = dists[n].version
    for line in dists[n].requires or []:
        req = Requirement(line)
        wanted = ["", *extras]
        if req.marker is None or any(req.marker.evaluate(dict(env, extra=e)) for e in wanted):
            visit(req.name, req.extras)


visit("vidlake", [])
for n in sorted(carry):
    print(f"{n}=={carry[n]}")
EOF
echo "carrying $(wc -l <"$NEW/requirements.txt") wheels (not on the device image, or another version):"
tr '\n' ' ' <"$NEW/requirements.txt"; echo

# 2. download them for the device's CPython 3.12 x86_64
platform_args=()
for p in $PLATFORMS; do platform_args+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platform_args[@]}" -d "$NEW/wheels" \
    -r "$NEW/requirements.txt" 2> >(grep -v "is neither a file nor a directory" >&2) || {
  echo "gpu_wheels.sh: pip download failed: a wheel for another platform may need its tag in"
  echo "PLATFORMS (manylinux_2_N_x86_64, N up to the device's glibc); see the error above"; exit 1; }

# 3. the working tree that travels with every call, and the room left for one part
tree=$(git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
names = [n for n in sys.stdin.buffer.read().decode().split("\0") if n]
files = [n for n in names if os.path.isfile(n) and not os.path.islink(n)]
for root, _, fs in os.walk("shared"):  # travels too, ignored or not
    files += [os.path.join(root, f) for f in fs]
print(sum(os.path.getsize(f) for f in set(files)))')
limit=$((64 * 1024 * 1024))
room=$((limit - tree - MARGIN_MIB * 1024 * 1024 - 65536))  # 64 KiB: MANIFEST and markers
[ "$room" -gt $((8 * 1024 * 1024)) ] || {
  echo "gpu_wheels.sh: the working tree is $tree bytes: too little of the call's 64 MiB is left"; exit 1; }

# 4. cut the wheels into parts
python3 - "$NEW" "$room" <<'EOF'
import hashlib, math, os, sys
from pathlib import Path

dest, room = Path(sys.argv[1]), int(sys.argv[2])
wheels = sorted((dest / "wheels").glob("*.whl"), key=lambda p: (-p.stat().st_size, p.name))
names = {}
for w in wheels:  # one version of each: two stop the whole install
    name = w.name.split("-")[0].lower()
    if name in names:
        sys.exit(f"gpu_wheels.sh: two wheels of {name}: {names[name]} and {w.name}")
    names[name] = w.name
total = sum(w.stat().st_size for w in wheels)
n = math.ceil(total / room)
per = math.ceil(total / n)
parts = [dest / f"part{k}" for k in range(1, n + 1)]
for p in parts:
    p.mkdir()
manifest, k, used = [], 0, 0
for w in wheels:
    data = w.read_bytes()
    chunks, offset = [], 0
    while offset < len(data):
        if used >= per:
            k, used = k + 1, 0
        take = min(per - used, len(data) - offset)
        chunks.append((k, data[offset : offset + take]))
        offset += take
        used += take
    names = [w.name] if len(chunks) == 1 else [f"{w.name}.chunk{i}" for i in range(len(chunks))]
    for name, (part, piece) in zip(names, chunks):
        (parts[part] / name).write_bytes(piece)
    where = " ".join(f"{parts[part].name}:{name}" for name, (part, _) in zip(names, chunks))
    manifest.append(f"{w.name} {len(data)} {hashlib.sha256(data).hexdigest()} {where}")
text = f"# parts {n}\n" + "\n".join(manifest) + "\n"
for i, p in enumerate(parts, 1):
    (p / "MANIFEST").write_text(text)
    (p / f"PART.{i}").write_text(f"{i} {n}\n")
print(f"{len(wheels)} wheels, {total} bytes, in {n} parts of up to {per} bytes")
EOF

# swap in the new parts (a failed run above leaves the old ones)
rm -rf "$DEST/part"* "$DEST/wheels" "$DEST/requirements.txt"
mv "$NEW"/* "$DEST"/ && rmdir "$NEW"

n=$(ls -d "$DEST"/part* | wc -l)
echo
echo "working tree: $tree bytes; each call carries it plus one part (limit $limit bytes):"
for k in $(seq 1 "$n"); do
  size=$(du -sb "$DEST/part$k" | cut -f1)
  echo "  $DEST/part$k  $size bytes  (call total $((size + tree)), headroom $((limit - size - tree)))"
done
echo
echo "device calls (the run tool), each at once after the one before: a machine left idle for"
echo "30 s is given back and /tmp/gpuwhl goes with it (then start again at call 1):"
for k in $(seq 1 $((n - 1))); do
  echo "  $k. carry [\"$DEST/part$k\"]  command: bash bench/gpu_pipeline.sh stash  timeout_s: 120"
done
echo "  $n. carry [\"$DEST/part$n\"]  command: bash bench/gpu_pipeline.sh run 6  timeout_s: 540"
echo "then give_back. The last call stashes its part, installs, and runs the index job;"
echo "its log and JSON come back from \$OUT (pipeline.log, pipeline.json)."
