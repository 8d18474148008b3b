// Shared by every kernel file (inlined by the Rust side for NVRTC and the host compiler).
//
// Parameter convention, matched by `Args` in crates/sparse-kernels/src/backend/gpu/launch.rs:
// device pointers, `long long` (i64) for every count, size or index, `float` / `double` for
// scalars. 1-D kernels run BLOCK threads per block and cover their range with GRID_STRIDE.
//
// Reductions that feed results are deterministic: a fixed tree in shared memory or a fixed
// warp butterfly, never atomics whose order could change a sum.


typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

#define BLOCK 256

#define GRID_STRIDE(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Bit `i` of a sparse-core bitmask (64-bit words, bit j of word w is element 64w + j).
__device__ __forceinline__ bool mask_bit(const u64* words, i64 i) {
  return (words[i >> 6] >> (i & 63)) & 1ull;
}

// Sum over the block (blockDim.x == BLOCK) in a fixed tree order; every thread gets it.
template <class T>
__device__ T block_sum(T v, T* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = BLOCK / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  T r = sh[0];
  __syncthreads();
  return r;
}

// Max over the block (blockDim.x == BLOCK); every thread gets it.
template <class T>
__device__ T block_max(T v, T* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = BLOCK / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x]) sh[threadIdx.x] = sh[threadIdx.x + s];
    __syncthreads();
  }
  T r = sh[0];
  __syncthreads();
  return r;
}

// Sum over a warp with a fixed butterfly: every lane gets the same value.
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
