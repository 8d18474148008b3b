#!/usr/bin/env bash
# One-shot check of a GPU with a prebuilt binary (docs/cuda.md, "Checking a GPU"):
#   1. `sparse-train selftest --device cuda`: every op (the sparse kernels and the GPU radix
#      select included) against the CPU backend, then short training runs whose per-step
#      losses must match the CPU's;
#   2. `sparse-train bench-gpu --quick`: SpMM / SDDMM / sparse conv / radix select against
#      cuBLAS, dense and PyTorch, ResNet-18/20 steps against PyTorch (about 5 minutes);
#   3. training on the GPU (synthetic CIFAR-shaped data, batch 128): ResNet-20 for 200 steps
#      and ResNet-18 for 300 steps, dense and RigL 90% ERK, with their throughput;
# then a summary. Needs only what `cargo xtask gpu-stage` put next to this script (the
# binary and pytorch/*.py), the NVIDIA driver, and NVRTC + cuBLAS from a CUDA toolkit or the
# PyPI wheels (PyTorch's). PyTorch itself is optional (its rows are skipped without it).
# Writes its logs to $OUT (or /tmp/gpu-check). Exit status: nonzero when a check failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/sparse-train"
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
status=0

echo "== GPU ($(date -u +%Y-%m-%d))"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

echo "== selftest --device cuda"
timeout 240 "$bin" selftest --device cuda 2>&1 | tee "$out/selftest.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== bench-gpu --quick"
timeout 360 "$bin" bench-gpu --device cuda --quick --scripts "$here/pytorch" 2>&1 | tee "$out/bench-gpu.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== training on the GPU"
rows=()
for spec in "resnet20 dense 200" "resnet20 rigl 200" "resnet18 dense 300" "resnet18 rigl 300"; do
  set -- $spec
  model=$1 method=$2 steps=$3
  dir="$out/run-$model-$method"
  rm -rf "$dir"
  log="$out/train-$model-$method.txt"
  if timeout 150 "$bin" train --device cuda --data synthetic --model "$model" --method "$method" \
      --sparsity 0.9 --batch-size 128 --steps "$steps" --eval-subset 1000 --out "$dir" \
      >"$log" 2>&1; then
    row=$(python3 - "$dir/summary.json" "$dir/metrics.jsonl" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = [json.loads(l) for l in open(sys.argv[2])][-1]
print(f"{s.get('train_images_per_sec', 0):10.0f} img/s  loss {m['train_loss']:.4f}  "
      f"test acc {m['test_accuracy']:.3f}  density {m['global_density']:.3f}")
PY
)
  else
    row="FAILED (see $log)"
    status=1
  fi
  rows+=("$(printf '%-10s %-6s %5s %s' "$model" "$method" "$steps" "$row")")
done

echo
echo "== summary"
grep -E "FAIL|all checks passed" "$out/selftest.txt" || echo "selftest: no verdict (see $out/selftest.txt)"
sed -n '/^| goal/,$p' "$out/bench-gpu.md"
printf '%-10s %-6s %5s %s\n' model method steps "train (batch 128, synthetic)"
printf '%s\n' "${rows[@]}"
exit $status
