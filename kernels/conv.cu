// Dense convolution as im2col + GEMM (cuBLAS), NCHW, groups = 1. The unfolded matrix is
// [C*KH*KW, B*P] (P = OH*OW), so one GEMM covers the whole batch in every pass:
//   forward  Y' [O, B*P] = W [O, CKK] · col        then Y = permute(Y') to [B, O, P]
//   dx       dcol = Wᵀ · dY'                        then dx = col2im(dcol)
//   dW       dY' · colᵀ                             (one GEMM over K = B*P: deterministic)
#include "common.cuh"


extern "C" __global__ void im2col(const float* x, float* col, i64 b, i64 c, i64 h, i64 w, i64 kh,
                                  i64 kw, i64 stride, i64 pad, i64 oh, i64 ow) {
  i64 p = oh * ow, bp = b * p;
  GRID_STRIDE(e, c * kh * kw * bp) {
    i64 r = e / bp, q = e % bp;
    i64 ch = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
    i64 bi = q / p, pos = q % p, oy = pos / ow, ox = pos % ow;
    i64 iy = oy * stride - pad + ki, ix = ox * stride - pad + kj;
    col[e] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((bi * c + ch) * h + iy) * w + ix] : 0.0f;
  }
}

// Gathers every column entry that came from input (bi, ch, iy, ix), kernel taps in order.
extern "C" __global__ void col2im(const float* col, float* dx, i64 b, i64 c, i64 h, i64 w, i64 kh,
                                  i64 kw, i64 stride, i64 pad, i64 oh, i64 ow) {
  i64 p = oh * ow, bp = b * p;
  GRID_STRIDE(e, b * c * h * w) {
    i64 ix = e % w, iy = (e / w) % h, ch = (e / (h * w)) % c, bi = e / (c * h * w);
    float s = 0.0f;
    for (i64 ki = 0; ki < kh; ki++) {
      i64 ty = iy + pad - ki;
      if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
      for (i64 kj = 0; kj < kw; kj++) {
        i64 tx = ix + pad - kj;
        if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
        i64 r = (ch * kh + ki) * kw + kj;
        s += col[r * bp + bi * p + (ty / stride) * ow + tx / stride];
      }
    }
    dx[e] = s;
  }
}

// [O, B*P] -> [B, O, P].
extern "C" __global__ void obp_to_bop(const float* src, float* dst, i64 o, i64 b, i64 p) {
  GRID_STRIDE(e, o * b * p) {
    i64 pos = e % p, oc = (e / p) % o, bi = e / (o * p);
    dst[e] = src[oc * b * p + bi * p + pos];
  }
}

// [B, O, P] -> [O, B*P].
extern "C" __global__ void bop_to_obp(const float* src, float* dst, i64 o, i64 b, i64 p) {
  GRID_STRIDE(e, o * b * p) {
    i64 pos = e % p, bi = (e / p) % b, oc = e / (b * p);
    dst[e] = src[(bi * o + oc) * p + pos];
  }
}
