"""Loads a sparse-train export of an MLP, runs its forward pass in numpy on real MNIST test
images and compares the predictions with the Rust ones.

usage: export_check.py EXPORT.safetensors PREDICTIONS.json MNIST_DIR
"""
import gzip, json, sys
import numpy as np
from safetensors import safe_open


def dense(f, name):
    keys = set(f.keys())
    if name + ".row_ptr" in keys:
        shape = [int(d) for d in f.get_tensor(name + ".shape")]
        row_ptr, col_idx = f.get_tensor(name + ".row_ptr"), f.get_tensor(name + ".col_idx")
        values = f.get_tensor(name + ".values")
        rows, cols = shape[0], int(np.prod(shape[1:]))
        w = np.zeros((rows, cols), dtype=np.float32)
        for r in range(rows):
            s, e = int(row_ptr[r]), int(row_ptr[r + 1])
            w[r, col_idx[s:e]] = values[s:e]
        return w.reshape(shape)
    return f.get_tensor(name)


def main():
    export, preds_path, mnist = sys.argv[1:4]
    expected = json.load(open(preds_path))
    n = len(expected["predictions"])
    raw = gzip.open(mnist + "/t10k-images-idx3-ubyte.gz").read()
    assert int.from_bytes(raw[:4], "big") == 0x803
    images = np.frombuffer(raw[16:], dtype=np.uint8)[: n * 784].reshape(n, 784).astype(np.float32)
    with safe_open(export, framework="numpy") as f:
        meta = f.metadata()
        mean, std = json.loads(meta["mean"])[0], json.loads(meta["std"])[0]
        x = (images / 255.0 - mean) / std
        for i, layer in enumerate(["fc1", "fc2", "fc3"]):
            w, b = dense(f, layer + ".weight"), f.get_tensor(layer + ".bias")
            x = x @ w.T + b
            if i < 2:
                x = np.maximum(x, 0.0)
    got = x.argmax(axis=1).tolist()
    agree = sum(int(a == b) for a, b in zip(got, expected["predictions"]))
    print(f"numpy forward agrees with Rust on {agree}/{n} images")
    assert agree == n, "predictions differ"
    logits = np.array(expected["logits"], dtype=np.float32)
    assert np.allclose(x, logits, atol=1e-3), float(np.abs(x - logits).max())


main()
