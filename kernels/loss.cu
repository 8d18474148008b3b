// Fused softmax cross-entropy with label smoothing (one warp per row, f64 sums reduced by a
// fixed butterfly), top-k accuracy and the label range check.
#include "common.cuh"

// Row losses (f64) and dlogits = (softmax - q) / b, q = on at the label, off elsewhere.
extern "C" __global__ void softmax_xent(const float* logits, const u32* labels, i64 b, i64 k,
                                        double on, double off, float* grad, double* row_loss) {
  i64 warps = BLOCK / 32;
  i64 row = (i64)blockIdx.x * warps + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= b) return;  // whole warps leave together
  const float* z = logits + row * k;
  float m = __int_as_float(0xff800000);  // -inf
  for (i64 j = lane; j < k; j += 32) m = fmaxf(m, z[j]);
  double mx = (double)warp_max(m);
  double s = 0.0;
  for (i64 j = lane; j < k; j += 32) s += exp((double)z[j] - mx);
  double lse = mx + log(warp_sum(s));
  i64 y = labels[row];
  double loss = 0.0;
  for (i64 j = lane; j < k; j += 32) {
    double q = j == y ? on : off;
    double logp = (double)z[j] - lse;
    loss -= q * logp;
    grad[row * k + j] = (float)((exp(logp) - q) / (double)b);
  }
  loss = warp_sum(loss);
  if (lane == 0) row_loss[row] = loss;
}

// flags[row] = 1 when the label is among the `top` largest logits (ties: lower index first).
extern "C" __global__ void topk_flags(const float* logits, const u32* labels, i64 b, i64 k, i64 top,
                                      u32* flags) {
  GRID_STRIDE(row, b) {
    const float* z = logits + row * k;
    i64 y = labels[row];
    float zy = z[y];
    i64 rank = 0;
    for (i64 j = 0; j < k; j++) rank += (z[j] > zy || (z[j] == zy && j < y)) ? 1 : 0;
    flags[row] = rank < top ? 1u : 0u;
  }
}

// One block: out[0] = max(labels).
extern "C" __global__ void max_label(const u32* labels, i64 n, u32* out) {
  __shared__ u32 sh[BLOCK];
  u32 m = 0;
  for (i64 i = threadIdx.x; i < n; i += BLOCK) m = labels[i] > m ? labels[i] : m;
  m = block_max(m, sh);
  if (threadIdx.x == 0) out[0] = m;
}
