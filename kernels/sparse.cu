// Masked and sparse products.
//
// * Masked execution materialises W ⊙ M (mask_copy) and runs cuBLAS; the at-mask weight
//   gradient masks the dense product (used where no CSR form exists).
// * Sparse execution runs on the CSR form of the weight kept on the device
//   (crates/sparse-kernels/src/ops/sparse/gpu_layout.rs):
//   - csr_spmm_rows: Sputnik-style SpMM (Gale et al., SC'20): one warp per row, rows visited
//     longest first (row swizzle), each lane owns 4 adjacent output columns (float4 loads),
//     the row's (column, value) pairs staged 32 at a time in shared memory;
//   - csr_sddmm_rows + sddmm_sum: the weight gradient at the active entries only, dY's row
//     chunk staged in shared memory, each warp reducing 32 entries at a time, split over
//     the inner dimension with the chunk partials added in chunk order (deterministic);
//   - csr_gather / csr_scatter: refresh the CSR values from the dense weight, and expand
//     CSR values back to a dense tensor; transpose_2d for the linear layers' layouts.
#include "common.cuh"

// SpMM: warps per block, and output columns per warp (32 lanes x 4).
#define SPMM_WARPS 4
#define SPMM_TILE 128
// SDDMM: inner-dimension chunk staged in shared memory per block.
#define SDDMM_CHUNK 2048

// out = x where the mask bit is set, else exactly 0 (out may alias x).
extern "C" __global__ void mask_copy(const float* x, const u64* words, float* out, i64 n) {
  GRID_STRIDE(i, n) { out[i] = mask_bit(words, i) ? x[i] : 0.0f; }
}

// out[r, :] = alpha * sum_q vals[q] * X[col_idx[q], :] + beta * out[r, :] for CSR A
// (rows x cols) and row-major X (cols x n). Grid: (ceil(n / SPMM_TILE), row groups), block
// 32 * SPMM_WARPS; warp slot s handles row order[s]. Each warp stages its row's (column,
// value) pairs 32 at a time in shared memory and every lane reads them as broadcasts.
// `x_aligned`: X starts on a 16-byte boundary, so rows of a length divisible by 4 take
// float4 loads.
extern "C" __global__ void csr_spmm_rows(const u32* row_ptr, const u32* col_idx,
                                         const float* vals, const u32* order, const float* x,
                                         float* out, i64 rows, i64 n, float alpha, float beta,
                                         i64 x_aligned) {
  __shared__ u32 sc[SPMM_WARPS][32];
  __shared__ float sv[SPMM_WARPS][32];
  int lane = threadIdx.x & 31, wp = threadIdx.x / 32;
  i64 j0 = (i64)blockIdx.x * SPMM_TILE + lane * 4;
  bool vec = x_aligned && (n & 3) == 0 && j0 + 3 < n;
  for (i64 slot = (i64)blockIdx.y * SPMM_WARPS + wp; slot < rows;
       slot += (i64)gridDim.y * SPMM_WARPS) {
    i64 r = order[slot];
    u32 lo = row_ptr[r], hi = row_ptr[r + 1];
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    for (u32 q0 = lo; q0 < hi; q0 += 32) {
      u32 q = q0 + lane;
      __syncwarp();
      sc[wp][lane] = q < hi ? col_idx[q] : 0;
      sv[wp][lane] = q < hi ? vals[q] : 0.0f;
      __syncwarp();
      int cnt = hi - q0 < 32 ? (int)(hi - q0) : 32;
      for (int t = 0; t < cnt; t++) {
        float vt = sv[wp][t];
        const float* xr = x + (i64)sc[wp][t] * n + j0;
        if (vec) {
          float4 xv = *(const float4*)xr;
          a0 += vt * xv.x;
          a1 += vt * xv.y;
          a2 += vt * xv.z;
          a3 += vt * xv.w;
        } else {
          if (j0 < n) a0 += vt * xr[0];
          if (j0 + 1 < n) a1 += vt * xr[1];
          if (j0 + 2 < n) a2 += vt * xr[2];
          if (j0 + 3 < n) a3 += vt * xr[3];
        }
      }
    }
    float acc[4] = {a0, a1, a2, a3};
    for (int e = 0; e < 4; e++) {
      if (j0 + e < n) {
        i64 o = r * n + j0 + e;
        out[o] = beta == 0.0f ? alpha * acc[e] : alpha * acc[e] + beta * out[o];
      }
    }
  }
}

// Partial SDDMM over inner chunk blockIdx.y: for every entry q of row blockIdx.x,
// part[blockIdx.y * nnz + q] = dY[r, chunk] · X[col_idx[q], chunk]. dY is rows x n and X is
// cols x n, row-major. Each warp takes 32 entries at a time: for each, the lanes stride the
// chunk (coalesced) and park their partial sums in shared memory (padded rows, no bank
// conflicts); then lane t adds entry t's 32 partials in lane order.
extern "C" __global__ void csr_sddmm_rows(const u32* row_ptr, const u32* col_idx,
                                          const float* dy, const float* x, float* part,
                                          i64 n, i64 nnz) {
  __shared__ float sdy[SDDMM_CHUNK];
  __shared__ float red[BLOCK / 32][32][33];
  i64 r = blockIdx.x;
  i64 k0 = (i64)blockIdx.y * SDDMM_CHUNK;
  i64 len = n - k0 < SDDMM_CHUNK ? n - k0 : SDDMM_CHUNK;
  for (i64 i = threadIdx.x; i < len; i += BLOCK) sdy[i] = dy[r * n + k0 + i];
  __syncthreads();
  int wp = threadIdx.x / 32, lane = threadIdx.x & 31;
  u32 lo = row_ptr[r], hi = row_ptr[r + 1];
  for (u32 q0 = lo + wp * 32; q0 < hi; q0 += BLOCK) {
    int cnt = hi - q0 < 32 ? (int)(hi - q0) : 32;
    for (int t = 0; t < cnt; t++) {
      const float* xr = x + (i64)col_idx[q0 + t] * n + k0;
      float s = 0.0f;
      for (i64 i = lane; i < len; i += 32) s += sdy[i] * xr[i];
      red[wp][t][lane] = s;
    }
    __syncwarp();
    if (lane < cnt) {
      float s = 0.0f;
      for (int l = 0; l < 32; l++) s += red[wp][lane][l];
      part[(i64)blockIdx.y * nnz + q0 + lane] = s;
    }
    __syncwarp();
  }
}

// out[q] = sum over chunks c (in order) of part[c * nnz + q].
extern "C" __global__ void sddmm_sum(const float* part, float* out, i64 nnz, i64 chunks) {
  GRID_STRIDE(q, nnz) {
    float s = 0.0f;
    for (i64 c = 0; c < chunks; c++) s += part[c * nnz + q];
    out[q] = s;
  }
}

// vals[q] = w[src[q]]: the CSR values from the dense weight (refresh after a step).
extern "C" __global__ void csr_gather(const float* w, const u32* src, float* vals, i64 nnz) {
  GRID_STRIDE(q, nnz) { vals[q] = w[src[q]]; }
}

// out[src[q]] = vals[q]: CSR values into a dense tensor (zero elsewhere beforehand).
extern "C" __global__ void csr_scatter(const float* vals, const u32* src, float* out, i64 nnz) {
  GRID_STRIDE(q, nnz) { out[src[q]] = vals[q]; }
}

// dst (cols x rows) = src (rows x cols) transposed.
extern "C" __global__ void transpose_2d(const float* src, float* dst, i64 rows, i64 cols) {
  GRID_STRIDE(e, rows * cols) {
    i64 c = e / rows, r = e % rows;
    dst[e] = src[r * cols + c];
  }
}
