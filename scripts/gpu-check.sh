#!/usr/bin/env bash
# One-shot check of a GPU with a prebuilt binary (docs/cuda.md, "Checking a GPU"):
#   1. `sparse-train selftest --device cuda`: every op against the CPU backend, then short
#      training runs whose per-step losses must match the CPU's;
#   2. short training runs on the GPU (dense and RigL 90%, convnet and ResNet-20, synthetic
#      CIFAR-shaped data, batch 128), with their throughput;
# then a table. Needs only the binary next to this script (staged by `cargo xtask gpu-stage`),
# the NVIDIA driver, and NVRTC + cuBLAS from a CUDA toolkit or the PyPI wheels (PyTorch's).
# Writes its logs to $OUT (or /tmp/gpu-check). Exit status: nonzero when a check failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/sparse-train"
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
status=0

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

echo "== selftest --device cuda"
timeout 300 "$bin" selftest --device cuda 2>&1 | tee "$out/selftest.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== training on the GPU"
rows=()
for spec in "convnet dense 1" "convnet rigl 1" "resnet20 dense 1" "resnet20 rigl 1"; do
  set -- $spec
  model=$1 method=$2 width=$3
  dir="$out/run-$model-$method"
  rm -rf "$dir"
  log="$out/train-$model-$method.txt"
  if timeout 120 "$bin" train --device cuda --model "$model" --method "$method" --sparsity 0.9 \
      --width-mult "$width" --batch-size 128 --steps 200 --eval-subset 1000 --out "$dir" \
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
  rows+=("$(printf '%-10s %-6s %s' "$model" "$method" "$row")")
done

echo
echo "== summary"
grep -E "FAIL|all checks passed" "$out/selftest.txt" || echo "selftest: no verdict (see $out/selftest.txt)"
printf '%-10s %-6s %s\n' model method "train (200 steps, batch 128, synthetic)"
printf '%s\n' "${rows[@]}"
exit $status
