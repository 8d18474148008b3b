// Host execution of CUDA kernels: makes a `.cu` file of `kernels/` compile as C++17 with the
// machine's g++/clang++, and runs a grid the way a GPU does, from cuLaunchKernel's parameter
// array (`emu_launch_<kernel>(dims, params)`, one per kernel, added by the Rust host runtime).
//
// * Blocks run one at a time, in blockIdx order (x fastest).
// * The threads of a block are fibers on one OS thread, scheduled round robin. A thread runs
//   until it reaches a barrier (__syncthreads, __syncwarp, a warp shuffle or vote), so
//   barriers, shared memory and warp exchanges behave as on the device. Exited threads no
//   longer count for barriers (as on sm_70+).
// * __shared__ variables are `static thread_local`: one copy per block in flight.
// * Warp shuffles exchange through a per-block slot array between two warp barriers.
//
// It is a correctness tool: it is slow, and it cannot run inline PTX or tensor-core
// instructions (kernels that use them need a portable twin; see docs/cuda.md).
#ifndef SPARSE_CUDA_HOST_H
#define SPARSE_CUDA_HOST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// ---- qualifiers ------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __shared__ static thread_local
#define __launch_bounds__(...)
#define CUDA_HOST_EMULATION 1

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};

namespace emu {

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 128 * 1024;

struct LaunchDims {
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_bytes;
};

struct Fiber {
  void* sp;
  uint3 tid;
  int linear;
  bool done;
  // What a blocked fiber waits for: 0 nothing, 1 the block barrier, 2 its warp barrier,
  // leaving generation `wait_gen`. The scheduler resumes it only once that has happened.
  int wait_kind;
  unsigned wait_gen;
  char* stack;
#if !defined(__x86_64__)
  ucontext_t ctx;
#endif
};

struct Block {
  dim3 block_dim, grid_dim;
  uint3 block_idx;
  int nthreads;
  int live;
  int bar_arrived;
  unsigned bar_gen;
  int warp_live[kMaxThreads / 32];
  int warp_arrived[kMaxThreads / 32];
  unsigned warp_gen[kMaxThreads / 32];
  unsigned long long slot[kMaxThreads];
  void (*body)(void*);
  void* body_ctx;
  void* sched_sp;
#if !defined(__x86_64__)
  ucontext_t sched_ctx;
#endif
  Fiber fibers[kMaxThreads];
};

inline thread_local Block* g_block = nullptr;
inline thread_local Fiber* g_fiber = nullptr;

}  // namespace emu

#define threadIdx (::emu::g_fiber->tid)
#define blockIdx (::emu::g_block->block_idx)
#define blockDim (::emu::g_block->block_dim)
#define gridDim (::emu::g_block->grid_dim)
#define warpSize 32

namespace emu {

#if defined(__x86_64__)
// Saves the callee-saved registers and the stack pointer in *save, switches to `load`.
extern "C" void emu_switch(void** save, void* load);
asm(R"(
.text
.p2align 4
.hidden emu_switch
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch, .-emu_switch
)");
#endif

__attribute__((noinline)) inline void yield_to_scheduler() {
  Fiber* me = g_fiber;
#if defined(__x86_64__)
  emu_switch(&me->sp, g_block->sched_sp);
#else
  swapcontext(&me->ctx, &g_block->sched_ctx);
#endif
}

inline void release_barriers_after_exit(Block& b, int warp) {
  if (b.bar_arrived > 0 && b.bar_arrived == b.live) {
    b.bar_arrived = 0;
    b.bar_gen++;
  }
  if (b.warp_arrived[warp] > 0 && b.warp_arrived[warp] == b.warp_live[warp]) {
    b.warp_arrived[warp] = 0;
    b.warp_gen[warp]++;
  }
}

__attribute__((noreturn)) inline void fiber_main() {
  Block& b = *g_block;
  b.body(b.body_ctx);
  Fiber* me = g_fiber;
  me->done = true;
  b.live--;
  b.warp_live[me->linear / 32]--;
  release_barriers_after_exit(b, me->linear / 32);
  yield_to_scheduler();
  __builtin_unreachable();
}

inline char* fiber_stack(int i) {
  static thread_local char* stacks[kMaxThreads];
  if (!stacks[i]) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) abort();
    stacks[i] = static_cast<char*>(p);
  }
  return stacks[i];
}

inline void start_fiber(Block& b, Fiber& f) {
  f.stack = fiber_stack(f.linear);
#if defined(__x86_64__)
  // The frame emu_switch pops: six registers, then the return address (fiber_main), with
  // the stack pointer 16-byte aligned at the pop so fiber_main starts as if called.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStackBytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top - 64);
  for (int r = 0; r < 6; r++) sp[r] = nullptr;
  sp[6] = reinterpret_cast<void*>(&fiber_main);
  sp[7] = nullptr;
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
  (void)b;
}

inline void resume(Block& b, Fiber& f) {
  g_fiber = &f;
#if defined(__x86_64__)
  emu_switch(&b.sched_sp, f.sp);
#else
  swapcontext(&b.sched_ctx, &f.ctx);
#endif
}

// Whether a fiber can continue: not blocked, or the barrier it waits at has completed.
inline bool runnable(const Block& b, const Fiber& f) {
  switch (f.wait_kind) {
    case 1:
      return b.bar_gen != f.wait_gen;
    case 2:
      return b.warp_gen[f.linear / 32] != f.wait_gen;
    default:
      return true;
  }
}

inline void run_block(Block& b) {
  unsigned bx = b.block_dim.x, by = b.block_dim.y;
  b.nthreads = int(bx * by * b.block_dim.z);
  b.live = b.nthreads;
  b.bar_arrived = 0;
  for (int w = 0; w < (b.nthreads + 31) / 32; w++) {
    b.warp_live[w] = std::min(32, b.nthreads - 32 * w);
    b.warp_arrived[w] = 0;
  }
  for (int i = 0; i < b.nthreads; i++) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.tid = uint3{unsigned(i) % bx, (unsigned(i) / bx) % by, unsigned(i) / (bx * by)};
    f.done = false;
    f.wait_kind = 0;
    start_fiber(b, f);
  }
  while (b.live > 0) {
    bool progressed = false;
    for (int i = 0; i < b.nthreads; i++) {
      Fiber& f = b.fibers[i];
      if (f.done || !runnable(b, f)) continue;
      progressed = true;
      resume(b, f);
    }
    if (!progressed) {
      // Every live thread waits at a barrier that can never complete (a barrier in
      // divergent code): the kernel would hang on a GPU too.
      fputs("cuda_host: deadlock: every live thread waits at a barrier\n", stderr);
      abort();
    }
  }
}

// Runs the grid: `body(ctx)` is the kernel call with its arguments unpacked.
inline int run_grid(const LaunchDims* d, void (*body)(void*), void* ctx) {
  unsigned nt = d->block[0] * d->block[1] * d->block[2];
  if (nt == 0 || nt > unsigned(kMaxThreads)) return 1;
  if (d->grid[0] == 0 || d->grid[1] == 0 || d->grid[2] == 0) return 2;
  static thread_local Block* block = nullptr;
  if (!block) block = new Block();
  Block& b = *block;
  Block* outer = g_block;
  Fiber* outer_fiber = g_fiber;
  g_block = &b;
  b.block_dim = dim3{d->block[0], d->block[1], d->block[2]};
  b.grid_dim = dim3{d->grid[0], d->grid[1], d->grid[2]};
  b.body = body;
  b.body_ctx = ctx;
  for (unsigned z = 0; z < d->grid[2]; z++)
    for (unsigned y = 0; y < d->grid[1]; y++)
      for (unsigned x = 0; x < d->grid[0]; x++) {
        b.block_idx = uint3{x, y, z};
        run_block(b);
      }
  g_block = outer;
  g_fiber = outer_fiber;
  return 0;
}

template <class... A, size_t... I>
void call_unpacked(void (*f)(A...), void** p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

template <class... A>
int launch(const LaunchDims* d, void (*f)(A...), void** params) {
  struct Ctx {
    void (*f)(A...);
    void** p;
  } c{f, params};
  return run_grid(
      d,
      [](void* v) {
        auto* c = static_cast<Ctx*>(v);
        call_unpacked(c->f, c->p, std::index_sequence_for<A...>{});
      },
      &c);
}

// ---- barriers and warp exchange --------------------------------------------------------
inline void block_barrier() {
  Block& b = *g_block;
  unsigned gen = b.bar_gen;
  if (++b.bar_arrived == b.live) {
    b.bar_arrived = 0;
    b.bar_gen++;
    yield_to_scheduler();  // let the others see the release in this round
    return;
  }
  Fiber& me = *g_fiber;
  while (gen == b.bar_gen) {
    me.wait_kind = 1;
    me.wait_gen = gen;
    yield_to_scheduler();
  }
  me.wait_kind = 0;
}

inline void warp_barrier() {
  Block& b = *g_block;
  int w = g_fiber->linear / 32;
  unsigned gen = b.warp_gen[w];
  if (++b.warp_arrived[w] == b.warp_live[w]) {
    b.warp_arrived[w] = 0;
    b.warp_gen[w]++;
    yield_to_scheduler();
    return;
  }
  Fiber& me = *g_fiber;
  while (gen == b.warp_gen[w]) {
    me.wait_kind = 2;
    me.wait_gen = gen;
    yield_to_scheduler();
  }
  me.wait_kind = 0;
}

// Every live lane publishes `v`; returns the value lane `src(lane)` published (or `v` when
// that lane is outside the segment of `width`, like the hardware).
template <class T, class F>
T exchange(T v, int width, F src) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
  Block& b = *g_block;
  int lin = g_fiber->linear;
  int lane = lin & 31, base = lin & ~31;
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  b.slot[lin] = bits;
  warp_barrier();
  int s = src(lane);
  int seg = lane & ~(width - 1);
  T r = v;
  if (s >= seg && s < seg + width && base + s < b.nthreads) {
    unsigned long long got = b.slot[base + s];
    memcpy(&r, &got, sizeof(T));
  }
  warp_barrier();
  return r;
}

}  // namespace emu

inline void __syncthreads() { emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_barrier(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return emu::exchange(v, width, [&](int lane) { return (lane & ~(width - 1)) + (src % width); });
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return emu::exchange(v, width, [&](int lane) { return lane ^ mask; });
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::exchange(v, width, [&](int lane) { return lane + int(delta); });
}
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::exchange(v, width, [&](int lane) { return lane - int(delta); });
}
inline unsigned __ballot_sync(unsigned, int pred) {
  unsigned r = 0;
  for (int l = 0; l < 32; l++) {
    int p = emu::exchange(pred ? 1 : 0, 32, [&](int) { return l; });
    if (p) r |= 1u << l;
  }
  return r;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) {
  int lanes = std::min(32, emu::g_block->nthreads - (emu::g_fiber->linear & ~31));
  unsigned full = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  return (__ballot_sync(m, pred) & full) == full;
}

// ---- atomics (blocks run one at a time, but keep them real atomics) ---------------------
template <class T>
T atomicAdd(T* p, T v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float* p, float v) {
  float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  double old = *p;
  *p = old + v;
  return old;
}
template <class T>
T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}
template <class T>
T atomicMin(T* p, T v) {
  T old = *p;
  if (v < old) *p = v;
  return old;
}
template <class T>
T atomicCAS(T* p, T cmp, T v) {
  T old = *p;
  if (old == cmp) *p = v;
  return old;
}

// ---- math and bit functions --------------------------------------------------------------
using std::max;
using std::min;
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) { return int(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(unsigned(i)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
inline int __clzll(unsigned long long x) { return x ? __builtin_clzll(x) : 64; }
inline int __ffs(unsigned x) { return __builtin_ffs(int(x)); }
inline int __ffsll(unsigned long long x) { return __builtin_ffsll((long long)x); }
template <class T>
T __ldg(const T* p) {
  return *p;
}

#define EMU_EXPORT(k)                                                        \
  extern "C" __attribute__((visibility("default"))) int emu_launch_##k(      \
      const emu::LaunchDims* d, void** params) {                           \
    return emu::launch(d, &k, params);                                       \
  }

#endif  // SPARSE_CUDA_HOST_H
