// SGD with momentum, Nesterov and coupled weight decay (PyTorch semantics), through a mask,
// and OptG's score step.
#include "common.cuh"

// mode 0: no mask; 1: weights and momentum are zeroed off the mask after the step;
// 2: the gradient is masked (G ⊙ M) before it.
extern "C" __global__ void sgd_step(float* w, const float* g, float* buf, const u64* words, i64 mode,
                                    float lr, float mu, i64 nesterov, float wd, i64 n) {
  GRID_STRIDE(i, n) {
    bool on = mode == 0 || mask_bit(words, i);
    float gi = (mode == 2 && !on) ? 0.0f : g[i];
    float wi = w[i];
    float d = gi + wd * wi;
    float b = buf[i];
    if (mu != 0.0f) {
      b = mu * b + d;
      d = nesterov ? d + mu * b : b;
    }
    wi -= lr * d;
    if (mode == 1 && !on) {
      wi = 0.0f;
      b = 0.0f;
    }
    w[i] = wi;
    buf[i] = b;
  }
}

// buf = mu * buf + g * w; scores -= lr * buf.
extern "C" __global__ void score_step(float* scores, float* buf, const float* g, const float* w,
                                      float mu, float lr, i64 n) {
  GRID_STRIDE(i, n) {
    float b = mu * buf[i] + g[i] * w[i];
    buf[i] = b;
    scores[i] -= lr * b;
  }
}
