#!/usr/bin/env bash
# GPU checks, run by hand on a CUDA machine (from the repo root, rnnlab importable):
#   bash scripts/gpu_check.sh [OUT_DIR]
# 1. the gpu-marked tests; 2. the default experiment on the GPU, twice (same seed), with timings;
# 3. the same with bf16-mixed, 16-mixed and trainer.deterministic=false.
set -uo pipefail
out="${1:-gpu_check}"
mkdir -p "$out"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
python -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -n 15
cd "$out"
for i in 1 2; do
  start=$(date +%s%N)
  python -m rnnlab trainer=gpu logger.run_name=gpu_default_$i 2>&1 | grep -A8 "^rnnlab:"
  echo "wall ms: $(( ($(date +%s%N) - start) / 1000000 ))"
done
# 3. what precision and determinism cost: the default experiment once each way (wall time, test loss)
for flags in "trainer.precision=bf16-mixed" "trainer.precision=16-mixed" "trainer.deterministic=false"; do
  start=$(date +%s%N)
  python -m rnnlab trainer=gpu $flags logger.run_name="gpu_${flags//[^a-z0-9]/_}" 2>&1 | grep -E "warning|test/loss|^rnnlab:" | head -n 4
  echo "$flags wall ms: $(( ($(date +%s%N) - start) / 1000000 ))"
done
