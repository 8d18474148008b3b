// Mask-update support: scores, bit masks from thresholds, the drop-and-grow scatter, the
// DST-EE activity counter and deterministic partial reductions (the host adds the
// per-block partials in block order).
#include "common.cuh"

extern "C" __global__ void abs_f32(const float* x, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = fabsf(x[i]); }
}

extern "C" __global__ void abs_product_f32(const float* a, const float* b, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = fabsf(a[i] * b[i]); }
}

// partial[block] = number of nonzeros the block's threads saw.
extern "C" __global__ void count_nonzero_partial(const float* x, i64 n, u64* partial) {
  __shared__ u64 sh[BLOCK];
  u64 c = 0;
  GRID_STRIDE(i, n) { c += x[i] != 0.0f ? 1 : 0; }
  c = block_sum(c, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = c;
}

// partial[block] = max |x| over the block's range.
extern "C" __global__ void abs_max_partial(const float* x, i64 n, float* partial) {
  __shared__ float sh[BLOCK];
  float m = 0.0f;
  GRID_STRIDE(i, n) { m = fmaxf(m, fabsf(x[i])); }
  m = block_max(m, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = m;
}

// x = 0 where the mask bit is set (zero_at).
extern "C" __global__ void zero_where(float* x, const u64* words, i64 n) {
  GRID_STRIDE(i, n) {
    if (mask_bit(words, i)) x[i] = 0.0f;
  }
}

// out word j: bit i set when x[i] >= theta (and, with `within`, its bit is set there).
extern "C" __global__ void bits_at_least(const float* x, float theta, const u64* within, u64* out,
                                         i64 n) {
  GRID_STRIDE(j, (n + 63) / 64) {
    u64 word = 0;
    for (i64 t = 0; t < 64 && j * 64 + t < n; t++) {
      i64 i = j * 64 + t;
      bool in = within == 0 || mask_bit(within, i);
      if (in && x[i] >= theta) word |= 1ull << t;
    }
    out[j] = word;
  }
}

// x[idx[q]] = vals[q] (or 0 without vals): the drop-and-grow scatter.
extern "C" __global__ void scatter(float* x, const u32* idx, const float* vals, i64 m) {
  GRID_STRIDE(q, m) { x[idx[q]] = vals == 0 ? 0.0f : vals[q]; }
}

// counter += 1 where the mask bit is set (saturating).
extern "C" __global__ void accumulate_activity(u32* counter, const u64* words, i64 n) {
  GRID_STRIDE(i, n) {
    if (mask_bit(words, i) && counter[i] != 0xffffffffu) counter[i] += 1;
  }
}

// DST-EE: |g| * scale + c * sqrt(ln_t / (count + eps)), in f64.
extern "C" __global__ void exploration_scores(const float* g, const u32* counts, float* out, i64 n,
                                              double scale, double c, double eps, double ln_t) {
  GRID_STRIDE(i, n) {
    out[i] = (float)((double)fabsf(g[i]) * scale + c * sqrt(ln_t / ((double)counts[i] + eps)));
  }
}
