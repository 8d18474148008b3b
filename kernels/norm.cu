// BatchNorm2d (PyTorch semantics): batch statistics in training (biased variance to
// normalise, unbiased in the running estimate), running statistics in evaluation.
// Per-channel sums are f64, one block per channel, reduced in a fixed tree order.
#include "common.cuh"

// Element j of channel ch in [B, C, HW] layout.
__device__ __forceinline__ i64 bn_index(i64 j, i64 ch, i64 c, i64 hw) {
  i64 bi = j / hw, p = j - bi * hw;
  return (bi * c + ch) * hw + p;
}

// One block per channel: mean (f64), 1/sqrt(var + eps), and the running statistics.
extern "C" __global__ void bn_stats(const float* x, i64 b, i64 c, i64 hw, float eps, float momentum,
                                    double* mean_out, float* inv_std, float* running_mean,
                                    float* running_var) {
  __shared__ double sh[BLOCK];
  i64 ch = blockIdx.x, n = b * hw;
  double s = 0.0;
  for (i64 j = threadIdx.x; j < n; j += BLOCK) s += (double)x[bn_index(j, ch, c, hw)];
  double mean = block_sum(s, sh) / (double)n;
  double v = 0.0;
  for (i64 j = threadIdx.x; j < n; j += BLOCK) {
    double d = (double)x[bn_index(j, ch, c, hw)] - mean;
    v += d * d;
  }
  double var = block_sum(v, sh) / (double)n;
  if (threadIdx.x == 0) {
    mean_out[ch] = mean;
    inv_std[ch] = (float)(1.0 / sqrt(var + (double)eps));
    running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * (float)mean;
    double unbiased = var * (double)n / (double)(n - 1);
    running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (float)unbiased;
  }
}

// The fused ReLU's mask: the forward's own affine expression, so both sides agree bit for bit.
__device__ __forceinline__ float bn_affine(const float* gamma, const float* beta, i64 ch, float v) {
  return gamma[ch] * v + beta[ch];
}

// xhat = (x - mean) * inv_std, y = gamma * xhat + beta (then max(y, 0) when relu != 0).
extern "C" __global__ void bn_apply_train(const float* x, const double* mean, const float* inv_std,
                                          const float* gamma, const float* beta, float* xhat,
                                          float* y, i64 c, i64 hw, i64 total, i64 relu) {
  GRID_STRIDE(i, total) {
    i64 ch = (i / hw) % c;
    float v = (x[i] - (float)mean[ch]) * inv_std[ch];
    xhat[i] = v;
    float o = bn_affine(gamma, beta, ch, v);
    y[i] = relu ? fmaxf(o, 0.0f) : o;
  }
}

// y = x * gamma / sqrt(rv + eps) + (beta - rm * scale) (then max(y, 0) when relu != 0).
extern "C" __global__ void bn_eval(const float* x, const float* gamma, const float* beta,
                                   const float* rm, const float* rv, float eps, float* y, i64 c,
                                   i64 hw, i64 total, i64 relu) {
  GRID_STRIDE(i, total) {
    i64 ch = (i / hw) % c;
    float scale = gamma[ch] / sqrtf(rv[ch] + eps);
    float shift = beta[ch] - rm[ch] * scale;
    float o = x[i] * scale + shift;
    y[i] = relu ? fmaxf(o, 0.0f) : o;
  }
}

// dy through the fused ReLU: kept where the forward's gamma * xhat + beta was positive.
__device__ __forceinline__ float bn_relu_dy(const float* dy, const float* xhat, const float* gamma,
                                            const float* beta, i64 relu, i64 k, i64 ch) {
  return (!relu || bn_affine(gamma, beta, ch, xhat[k]) > 0.0f) ? dy[k] : 0.0f;
}

// One block per channel: sum(dy) and sum(dy * xhat), f64 (dy masked by a fused ReLU when
// relu != 0; beta is then the forward's beta).
extern "C" __global__ void bn_backward_sums(const float* dy, const float* xhat, const float* gamma,
                                            const float* beta, i64 relu, i64 b, i64 c, i64 hw,
                                            double* sum_dy, double* sum_dy_xhat) {
  __shared__ double sh[BLOCK];
  i64 ch = blockIdx.x, n = b * hw;
  double s1 = 0.0, s2 = 0.0;
  for (i64 j = threadIdx.x; j < n; j += BLOCK) {
    i64 k = bn_index(j, ch, c, hw);
    double d = (double)bn_relu_dy(dy, xhat, gamma, beta, relu, k, ch);
    s1 += d;
    s2 += d * (double)xhat[k];
  }
  s1 = block_sum(s1, sh);
  s2 = block_sum(s2, sh);
  if (threadIdx.x == 0) {
    sum_dy[ch] = s1;
    sum_dy_xhat[ch] = s2;
  }
}

// dx = gamma * inv_std / n * (n * dy - sum_dy - xhat * sum_dy_xhat), dy masked as above.
extern "C" __global__ void bn_backward_dx(const float* dy, const float* xhat, const float* inv_std,
                                          const float* gamma, const float* beta, i64 relu,
                                          const double* sum_dy, const double* sum_dy_xhat,
                                          float* dx, i64 c, i64 hw, i64 per_channel, i64 total) {
  GRID_STRIDE(i, total) {
    i64 ch = (i / hw) % c;
    float n = (float)per_channel;
    float k = gamma[ch] * inv_std[ch] / n;
    float d = bn_relu_dy(dy, xhat, gamma, beta, relu, i, ch);
    dx[i] = k * (n * d - (float)sum_dy[ch] - xhat[i] * (float)sum_dy_xhat[ch]);
  }
}

extern "C" __global__ void f64_to_f32(const double* x, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = (float)x[i]; }
}
