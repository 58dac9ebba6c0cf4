#!/usr/bin/env bash
# The SAM 3 GPU figures of bench/RESULTS.md in one call on a lent GPU machine (the `device`
# tool runs it in the repository root, with $OUT for the files that come back):
#   bash bench/gpu_session.sh [figures] [profile] [shared]     (default: all three)
# figures: sam3_gpu.py's table (eager at 4/1/16 concepts, host-side RLE, a longer clip; then
#          torch.compile at 4 concepts); profile: sam3_profile.py (where a clip's time goes);
# shared:  K processes sharing the GPU (K segment actors per GPU).
#
# That machine has torch and transformers but none of this project's other dependencies, and
# nothing can be installed from a registry there: the wheels travel in .whl (transformers of
# the version tested here, pycocotools), made on this machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl transformers==5.24.0 pycocotools==2.0.11
# Ray and pylance do not fit the call's 64 MiB, so the index job itself does not run there;
# sam3_gpu.py times the segment actor's own loop (the model plus draining its outputs).
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
steps=${*:-figures profile shared}
for step in $steps; do
  case $step in
    figures)
      # 4 concepts first (the target), 1, 16; host-side RLE at 4; a 3x longer clip (GPU
      # memory against clip length). 60 frames = a default 10 s clip at 6 frames/s.
      timeout "${EAGER_S:-270}" python3 bench/sam3_gpu.py --frames 60 --concepts 4,1,16 \
          --repeats 2 --compare-host-rle --long-frames 180 --compare-keep-all --workdir "$WORK" \
          --json "$OUT/eager.json" 2>&1 | tee "$OUT/eager.log"
      timeout "${COMPILE_S:-200}" python3 bench/sam3_gpu.py --frames 60 --concepts 4 \
          --repeats 2 --compile --workdir "$WORK" --json "$OUT/compile.json" 2>&1 \
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
  esac
done
