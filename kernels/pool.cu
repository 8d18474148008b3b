// Pooling over [B, C, H, W] planes: 2x2 max-pool (argmax = flat input index, first maximum
// on ties), k x k average pool, global average pool; forward and backward.
#include "common.cuh"

extern "C" __global__ void max_pool2x2_fwd(const float* x, float* y, u32* arg, i64 planes, i64 h,
                                           i64 w) {
  i64 oh = h / 2, ow = w / 2;
  GRID_STRIDE(o, planes * oh * ow) {
    i64 plane = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
    i64 base = plane * h * w;
    i64 best = base + 2 * i * w + 2 * j;
    const i64 di[3] = {0, 1, 1}, dj[3] = {1, 0, 1};
    for (int t = 0; t < 3; t++) {
      i64 idx = base + (2 * i + di[t]) * w + 2 * j + dj[t];
      if (x[idx] > x[best]) best = idx;
    }
    y[o] = x[best];
    arg[o] = (u32)best;
  }
}

// Windows do not overlap, so each input gets at most one gradient: dx is zeroed first.
extern "C" __global__ void max_pool2x2_bwd(const float* dy, const u32* arg, float* dx, i64 n_out,
                                           i64 n_in) {
  GRID_STRIDE(o, n_out) {
    i64 a = arg[o];
    if (a < n_in) dx[a] = dy[o];
  }
}

extern "C" __global__ void avg_pool_fwd(const float* x, float* y, i64 planes, i64 h, i64 w, i64 k) {
  i64 oh = h / k, ow = w / k;
  float inv = 1.0f / (float)(k * k);
  GRID_STRIDE(o, planes * oh * ow) {
    i64 plane = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
    const float* p = x + plane * h * w;
    float s = 0.0f;
    for (i64 di = 0; di < k; di++)
      for (i64 dj = 0; dj < k; dj++) s += p[(i * k + di) * w + j * k + dj];
    y[o] = s * inv;
  }
}

extern "C" __global__ void avg_pool_bwd(const float* dy, float* dx, i64 planes, i64 h, i64 w, i64 k) {
  i64 oh = h / k, ow = w / k;
  float inv = 1.0f / (float)(k * k);
  GRID_STRIDE(e, planes * h * w) {
    i64 plane = e / (h * w), r = e % (h * w), i = r / w, j = r % w;
    dx[e] = (i < oh * k && j < ow * k) ? dy[plane * oh * ow + (i / k) * ow + j / k] * inv : 0.0f;
  }
}

// One thread per plane, summed in order (as the CPU backend).
extern "C" __global__ void global_avg_pool_fwd(const float* x, float* y, i64 planes, i64 hw) {
  GRID_STRIDE(p, planes) {
    float s = 0.0f;
    for (i64 i = 0; i < hw; i++) s += x[p * hw + i];
    y[p] = s / (float)hw;
  }
}

extern "C" __global__ void global_avg_pool_bwd(const float* dy, float* dx, i64 hw, i64 total) {
  GRID_STRIDE(e, total) { dx[e] = dy[e / hw] / (float)hw; }
}
