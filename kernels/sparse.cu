// Masked and sparse products. Masked execution materialises W ⊙ M (mask_copy) and runs
// cuBLAS; the at-mask weight gradient masks the dense product. CSR SpMM and SDDMM here are
// the straightforward row kernels (the tuned ones belong to the sparse-kernels issue).
#include "common.cuh"

// out = x where the mask bit is set, else exactly 0 (out may alias x).
extern "C" __global__ void mask_copy(const float* x, const u64* words, float* out, i64 n) {
  GRID_STRIDE(i, n) { out[i] = mask_bit(words, i) ? x[i] : 0.0f; }
}

// out = alpha * A · X + beta * out for CSR A (rows x cols) and row-major X (cols x n).
extern "C" __global__ void csr_spmm(const u32* row_ptr, const u32* col_idx, const float* vals,
                                    const float* x, float* out, i64 rows, i64 n, float alpha,
                                    float beta) {
  GRID_STRIDE(e, rows * n) {
    i64 r = e / n, j = e % n;
    float s = 0.0f;
    for (u32 q = row_ptr[r]; q < row_ptr[r + 1]; q++) s += vals[q] * x[(i64)col_idx[q] * n + j];
    out[e] = beta == 0.0f ? alpha * s : alpha * s + beta * out[e];
  }
}

// out[q] = dY[r, :] · X[col_idx[q], :] for every entry q of row r: one block per row.
extern "C" __global__ void csr_sddmm(const u32* row_ptr, const u32* col_idx, const float* dy,
                                     const float* x, float* out, i64 n) {
  i64 r = blockIdx.x;
  for (u32 q = row_ptr[r] + threadIdx.x; q < row_ptr[r + 1]; q += BLOCK) {
    const float* a = dy + r * n;
    const float* b = x + (i64)col_idx[q] * n;
    float s = 0.0f;
    for (i64 j = 0; j < n; j++) s += a[j] * b[j];
    out[q] = s;
  }
}
