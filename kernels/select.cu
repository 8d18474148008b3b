// Exact selection on the device: radix select of the k best scores among candidates, with the
// spec §0.2 tie rule (rank by (score, flat index), lower index first), bit-identical to
// sparse-core's `select`.
//
// Scores map to an order-preserving 32-bit rank key (smaller is better; -0.0 folds onto
// +0.0). Four 8-bit digit passes (`radix_hist` + `radix_pick`) find the exact key T of the
// k-th entry and `need`, how many entries tied at T to take. Then `radix_tie_blocks`,
// `radix_scan` and `radix_write` write the mask words: every candidate better than T, plus
// the first `need` ties in flat-index order (an exclusive scan of per-word tie counts).
// All reductions are integer sums, so the result does not depend on scheduling. No host
// round trip happens between passes: the state lives in device memory.
//
// A selection over several layers at once (global ranking, layers concatenated in order)
// runs each histogram pass over every layer before its pick, and the write phase layer by
// layer, carrying the ties already taken in `st[ST_TIE_BASE]` (`radix_advance`).
#include "common.cuh"

// Device state, u64 slots.
#define ST_PREFIX 0    // the digits of T found so far
#define ST_PMASK 1     // which bits of ST_PREFIX are fixed
#define ST_NEED 2      // entries still to take at the current prefix
#define ST_TIE_BASE 3  // ties taken by earlier layers (global selection)
#define ST_NAN 4       // lowest flat index of a NaN candidate (all ones when none)
#define ST_TOTAL 5     // ties of the current layer (set by radix_scan)

__device__ __forceinline__ u32 rank_key(float x, i64 largest) {
  u32 b = __float_as_uint(x == 0.0f ? 0.0f : x);
  u32 k = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return largest ? ~k : k;
}

// Candidate bits of word w: mode 0 every entry, 1 the set bits of `words`, 2 the unset bits.
__device__ __forceinline__ u64 cand_word(const u64* words, i64 mode, i64 w, i64 n) {
  u64 valid = (w + 1) * 64 <= n ? ~0ull : ((1ull << (n & 63)) - 1);
  if (mode == 0) return valid;
  if (mode == 1) return words[w] & valid;
  return ~words[w] & valid;
}

// Histogram of digit (key >> shift) & 255 over the candidates whose key matches the prefix;
// the first pass (shift 24) also records the lowest NaN index (`offset`: the layer's start
// in the concatenation).
extern "C" __global__ void radix_hist(const float* s, const u64* words, i64 mode, i64 n,
                                      i64 offset, i64 largest, i64 shift, u64* st, u32* hist) {
  __shared__ u32 sh[256];
  for (int i = threadIdx.x; i < 256; i += BLOCK) sh[i] = 0;
  __syncthreads();
  u32 prefix = (u32)st[ST_PREFIX], pmask = (u32)st[ST_PMASK];
  GRID_STRIDE(i, n) {
    if (!((cand_word(words, mode, i >> 6, n) >> (i & 63)) & 1ull)) continue;
    float x = s[i];
    if (x != x) {
      if (shift == 24) atomicMin(&st[ST_NAN], (u64)(offset + i));
      continue;
    }
    u32 k = rank_key(x, largest);
    if ((k & pmask) == prefix) atomicAdd(&sh[(k >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += BLOCK)
    if (sh[i]) atomicAdd(&hist[i], sh[i]);
}

// Sets the next digit of T: the bucket holding the need-th best entry (one thread).
extern "C" __global__ void radix_pick(u64* st, u32* hist, i64 shift) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  u64 need = st[ST_NEED], acc = 0;
  int d = 0;
  for (; d < 255; d++) {
    if (acc + hist[d] >= need) break;
    acc += hist[d];
  }
  st[ST_PREFIX] |= (u64)d << shift;
  st[ST_PMASK] |= (u64)255 << shift;
  st[ST_NEED] = need - acc;
  for (int i = 0; i < 256; i++) hist[i] = 0;
}

// The candidates of word w strictly better than T (returned) and tied with it (*tie).
__device__ __forceinline__ u64 word_bits(const float* s, const u64* words, i64 mode, i64 n,
                                         i64 largest, u32 t, i64 w, u64* tie) {
  u64 c = cand_word(words, mode, w, n), better = 0, ties = 0;
  while (c) {
    int b = __ffsll((long long)c) - 1;
    c &= c - 1;
    u32 k = rank_key(s[w * 64 + b], largest);
    if (k < t) better |= 1ull << b;
    else if (k == t) ties |= 1ull << b;
  }
  *tie = ties;
  return better;
}

// block_ties[block] = ties at T in the block's BLOCK words.
extern "C" __global__ void radix_tie_blocks(const float* s, const u64* words, i64 mode, i64 n,
                                            i64 largest, const u64* st, u64* block_ties) {
  __shared__ u64 sh[BLOCK];
  i64 nw = (n + 63) / 64, w = (i64)blockIdx.x * BLOCK + threadIdx.x;
  u64 c = 0;
  if (w < nw) {
    u64 tie;
    word_bits(s, words, mode, n, largest, (u32)st[ST_PREFIX], w, &tie);
    c = __popcll(tie);
  }
  c = block_sum(c, sh);
  if (threadIdx.x == 0) block_ties[blockIdx.x] = c;
}

// In place exclusive scan of v[0..nb) in index order (one block); the total goes to
// st[ST_TOTAL].
extern "C" __global__ void radix_scan(u64* v, i64 nb, u64* st) {
  __shared__ u64 sh[BLOCK];
  i64 per = (nb + BLOCK - 1) / BLOCK;
  i64 lo = threadIdx.x * per, hi = lo + per < nb ? lo + per : nb;
  u64 sum = 0;
  for (i64 i = lo; i < hi; i++) sum += v[i];
  sh[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    u64 acc = 0;
    for (int t = 0; t < BLOCK; t++) {
      u64 x = sh[t];
      sh[t] = acc;
      acc += x;
    }
    st[ST_TOTAL] = acc;
  }
  __syncthreads();
  u64 acc = sh[threadIdx.x];
  for (i64 i = lo; i < hi; i++) {
    u64 x = v[i];
    v[i] = acc;
    acc += x;
  }
}

// out word w: the candidates better than T, plus the ties at T whose rank among all ties
// (earlier layers, earlier blocks, earlier words, lower bits) is below `need`.
extern "C" __global__ void radix_write(const float* s, const u64* words, i64 mode, i64 n,
                                       i64 largest, const u64* st, const u64* block_prefix,
                                       u64* out) {
  __shared__ u64 sh[BLOCK];
  i64 nw = (n + 63) / 64, w = (i64)blockIdx.x * BLOCK + threadIdx.x;
  u64 tie = 0, better = 0;
  if (w < nw) better = word_bits(s, words, mode, n, largest, (u32)st[ST_PREFIX], w, &tie);
  u64 c = __popcll(tie);
  sh[threadIdx.x] = c;
  __syncthreads();
  for (int off = 1; off < BLOCK; off <<= 1) {
    u64 add = threadIdx.x >= (unsigned)off ? sh[threadIdx.x - off] : 0;
    __syncthreads();
    sh[threadIdx.x] += add;
    __syncthreads();
  }
  u64 before = st[ST_TIE_BASE] + block_prefix[blockIdx.x] + sh[threadIdx.x] - c;
  u64 need = st[ST_NEED];
  if (w < nw) {
    u64 take = before >= need ? 0 : (need - before < c ? need - before : c);
    for (; take > 0; take--) {
      u64 low = tie & (~tie + 1);
      better |= low;
      tie ^= low;
    }
    out[w] = better;
  }
}

// After a layer's write: its ties count as taken by the layers that follow.
extern "C" __global__ void radix_advance(u64* st) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  st[ST_TIE_BASE] += st[ST_TOTAL];
}

// out = a & ~b (keep = active minus dropped) and out = a | b (new = keep plus grown).
extern "C" __global__ void words_and_not(const u64* a, const u64* b, u64* out, i64 nw) {
  GRID_STRIDE(i, nw) { out[i] = a[i] & ~b[i]; }
}

extern "C" __global__ void words_or(const u64* a, const u64* b, u64* out, i64 nw) {
  GRID_STRIDE(i, nw) { out[i] = a[i] | b[i]; }
}

// Set bits per word (the per-layer nonzero count of a device mask: the host adds them).
extern "C" __global__ void words_popcount(const u64* a, u64* partial, i64 nw) {
  __shared__ u64 sh[BLOCK];
  u64 c = 0;
  GRID_STRIDE(i, nw) { c += __popcll(a[i]); }
  c = block_sum(c, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = c;
}
