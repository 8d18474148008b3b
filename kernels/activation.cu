// Element-wise ops: ReLU forward and backward, residual add, scaling, AGC's control variate.
#include "common.cuh"

// y = max(x, 0); y may alias x.
extern "C" __global__ void relu_f32(const float* x, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = fmaxf(x[i], 0.0f); }
}

// dx = dy where y > 0, else 0.
extern "C" __global__ void relu_backward_f32(const float* dy, const float* y, float* dx, i64 n) {
  GRID_STRIDE(i, n) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}

// out = a + b; out may alias a.
extern "C" __global__ void add_f32(const float* a, const float* b, float* out, i64 n) {
  GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

// out = max(a + b, 0) (a residual block's sum and ReLU); out may alias a.
extern "C" __global__ void add_relu_f32(const float* a, const float* b, float* out, i64 n) {
  GRID_STRIDE(i, n) { out[i] = fmaxf(a[i] + b[i], 0.0f); }
}

extern "C" __global__ void scale_f32(float* x, float s, i64 n) {
  GRID_STRIDE(i, n) { x[i] *= s; }
}

// dst = g + c * (mu - dst).
extern "C" __global__ void control_variate_f32(float* dst, const float* g, const float* mu, float c, i64 n) {
  GRID_STRIDE(i, n) { dst[i] = g[i] + c * (mu[i] - dst[i]); }
}
