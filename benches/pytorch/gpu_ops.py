"""PyTorch side of `sparse-train bench-gpu` (and `cargo xtask bench --device cuda`): the
baselines a user would pick on the same GPU, timed with CUDA events after warm-up, medians
over repetitions, fresh random inputs.

* `mm`: torch.mm of an m x k weight by a k x n activation, fp32 (TF32 off) and TF32 on;
* `topk`: torch.topk of the k largest of n scores (values and indices).

Prints one JSON object:
    {"mm": [{"m":..,"k":..,"n":..,"fp32_ms":..,"tf32_ms":..}], "topk": {"n":..,"k":..,"ms":..},
     "torch": "...", "gpu": "..."}

    python gpu_ops.py --mm 4096x4096x256 --mm 256x64x100352 --topk 25000000:2500000 --reps 20
"""
import argparse
import json

import torch


def timed(f, reps):
    for _ in range(3):
        f()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mm", action="append", default=[], help="MxKxN")
    p.add_argument("--topk", default=None, help="N:K")
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device")
    torch.manual_seed(0)
    out = {"mm": [], "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    for spec in a.mm:
        m, k, n = (int(v) for v in spec.split("x"))
        w = torch.randn(m, k, device="cuda")
        x = torch.randn(k, n, device="cuda")
        row = {"m": m, "k": k, "n": n}
        for name, tf32 in (("fp32_ms", False), ("tf32_ms", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            row[name] = timed(lambda: torch.mm(w, x), a.reps)
        torch.backends.cuda.matmul.allow_tf32 = False
        out["mm"].append(row)
        del w, x
    if a.topk:
        n, k = (int(v) for v in a.topk.split(":"))
        s = torch.randn(n, device="cuda")
        out["topk"] = {"n": n, "k": k, "ms": timed(lambda: torch.topk(s, k), a.reps)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
