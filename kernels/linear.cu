// Fully connected layers run their products on cuBLAS; these are the rest.
#include "common.cuh"

// y[r, j] += bias[j] for a row-major rows x cols matrix.
extern "C" __global__ void add_bias_rows(float* y, const float* bias, i64 cols, i64 total) {
  GRID_STRIDE(i, total) { y[i] += bias[i % cols]; }
}

// out[j] = sum over rows of x[r, j], one thread per column, rows in order.
extern "C" __global__ void col_sums(const float* x, i64 rows, i64 cols, float* out) {
  GRID_STRIDE(j, cols) {
    float s = 0.0f;
    for (i64 r = 0; r < rows; r++) s += x[r * cols + j];
    out[j] = s;
  }
}
