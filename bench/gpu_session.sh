#!/usr/bin/env bash
# The SAM 3 GPU figures of bench/RESULTS.md in one call on a lent GPU machine (the `device`
# tool runs it in the repository root, with $OUT for the files that come back):
#   bash bench/gpu_session.sh [all] [figures] [concepts16] [memory] [compile] [profile] [shared]
# (default: figures memory shared). all: figures and memory in one process. figures: sam3_gpu.py at 4 and 1 concepts, batched tracker,
# host-side RLE; concepts16; memory: a 16 vs 64-frame clip, with and without dropping old
# tracker outputs; compile: torch.compile of the vision encoder; profile: sam3_profile.py
# (where a clip's time goes); shared: K processes sharing the GPU (K segment actors per GPU).
#
# That machine has torch and transformers but none of this project's other dependencies, and
# nothing can be installed from a registry there: the wheels travel in .whl (transformers of
# the version tested here, pycocotools), made on this machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl transformers==5.24.0 pycocotools==2.0.11
# Ray and pylance do not fit one call's 64 MiB, so the index job itself does not run in these
# steps; sam3_gpu.py times the segment actor's own loop (the model plus draining its outputs).
# The index job on the GPU (its GPU busy share) is bench/gpu_pipeline.sh: wheels in 6 calls.
set -u
OUT=${OUT:-/tmp/vidlake-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

WORK=/tmp/sam3-full  # the full-size random model, built once, loaded by every run
# Each step loads the model (~20 s) and runs 1-3 minutes on an H200; pick what fits the lease.
steps=${*:-figures memory shared}
for step in $steps; do
  case $step in
    figures)
      # 4 concepts (the target), 1; then at 4 concepts objects batched through the tracker
      # and masks encoded on the host. 60 frames = a default 10 s clip at 6 frames/s.
      timeout "${FIGURES_S:-240}" python3 bench/sam3_gpu.py --frames 60 --concepts 4,1 \
          --repeats 1 --compare-batched --compare-host-rle --workdir "$WORK" \
          --json "$OUT/figures.json" 2>&1 | tee "$OUT/figures.log" ;;
    all)
      # figures and memory in one process (one model load: what a 15-minute lease affords):
      # 4 and 1 concepts, the batched passes, host RLE, then 16- and 64-frame clips with and
      # without dropping old tracker outputs.
      timeout "${ALL_S:-450}" python3 bench/sam3_gpu.py --frames 60 --concepts 4,1 \
          --repeats 1 --compare-batched --compare-host-rle --long-frames 16,64 \
          --compare-keep-all --workdir "$WORK" --json "$OUT/all.json" 2>&1 \
          | tee "$OUT/all.log" ;;
    concepts16)
      timeout "${CONCEPTS16_S:-200}" python3 bench/sam3_gpu.py --frames 60 --concepts 16 \
          --repeats 1 --workdir "$WORK" --json "$OUT/concepts16.json" 2>&1 \
          | tee "$OUT/concepts16.log" ;;
    memory)
      # GPU memory against clip length, with and without dropping outputs the tracker no
      # longer reads.
      timeout "${MEMORY_S:-200}" python3 bench/sam3_gpu.py --frames 16 --concepts 4 \
          --repeats 1 --long-frames 64 --compare-keep-all --workdir "$WORK" \
          --json "$OUT/memory.json" 2>&1 | tee "$OUT/memory.log" ;;
    compile)
      timeout "${COMPILE_S:-200}" python3 bench/sam3_gpu.py --frames 60 --concepts 4 \
          --repeats 1 --compile --workdir "$WORK" --json "$OUT/compile.json" 2>&1 \
          | tee "$OUT/compile.log" ;;
    profile)
      timeout "${PROFILE_S:-130}" python3 bench/sam3_profile.py --frames 16 --concepts 4 \
          --top 25 --workdir "$WORK" > "$OUT/profile.log" 2>&1
      grep -E "frames/s|kernels ran|cumtime|sam3_video.py|sam3_tracker_video.py" \
          "$OUT/profile.log" | head -40 ;;
    shared)
      timeout "${SHARED_S:-190}" python3 bench/sam3_gpu.py --frames 16 --concepts 4 \
          --repeats 1 --shared 1,2,3 --shared-clips 2 --workdir "$WORK" \
          --json "$OUT/shared.json" 2>&1 | tee "$OUT/shared.log" ;;
    *) echo "unknown step $step (all figures concepts16 memory compile profile shared)"; exit 2 ;;
  esac
done
