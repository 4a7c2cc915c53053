// The serving allocation trace (tests/src/alloc_trace.rs) replayed through the driver's
// stream-ordered pool (cuMemAllocAsync / cuMemFreeAsync on the device's default pool, release
// threshold UINT64_MAX): the peer figure of the caching allocator's benchmark.
//
//   nvcc -O2 -o /tmp/pool_trace scripts/peers/alloc_trace_pool.cu -lcuda
//   /tmp/pool_trace target/criterion/alloc-trace-1.txt [replays]
//
// A free after a use on another stream records an event there and makes the block's stream
// wait for it before cuMemFreeAsync (what the pool needs to reuse the memory safely).
// Prints, per replay, microseconds per operation and the pool's peak reserved bytes over the
// trace's peak requested bytes.
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define CK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { \
  fprintf(stderr, "%s failed: %d (line %d)\n", #x, (int)r_, __LINE__); exit(1); } } while (0)

typedef struct { char kind; uint32_t id; uint64_t size; int stream; } Op;

static double now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s TRACE [replays]\n", argv[0]); return 2; }
  int replays = argc > 2 ? atoi(argv[2]) : 3;
  FILE *f = fopen(argv[1], "r");
  if (!f) { perror(argv[1]); return 1; }
  size_t cap = 1 << 20, n = 0; Op *ops = (Op *)malloc(cap * sizeof(Op));
  char kind; char arg[64]; uint32_t id; uint64_t size; int streams = 1;
  while (fscanf(f, " %c %u", &kind, &id) == 2) {
    if (n == cap) { cap *= 2; ops = (Op *)realloc(ops, cap * sizeof(Op)); }
    Op op; op.kind = kind; op.id = id; op.size = 0; op.stream = -1;
    if (kind == 'a') {
      if (fscanf(f, " %lu %d", &size, &op.stream) != 2) return 1;
      op.size = size; if (op.stream + 1 > streams) streams = op.stream + 1;
    } else {
      if (fscanf(f, " %63s", arg) != 1) return 1;
      op.stream = strcmp(arg, "-") == 0 ? -1 : atoi(arg);
    }
    ops[n++] = op;
  }
  fclose(f);
  uint32_t max_id = 0; for (size_t i = 0; i < n; i++) if (ops[i].id > max_id) max_id = ops[i].id;
  CUdeviceptr *ptr = (CUdeviceptr *)calloc(max_id + 1, sizeof(CUdeviceptr));
  int *home = (int *)calloc(max_id + 1, sizeof(int));
  uint64_t live = 0, peak = 0; uint64_t *sz = (uint64_t *)calloc(max_id + 1, sizeof(uint64_t));
  for (size_t i = 0; i < n; i++) {
    if (ops[i].kind == 'a') { sz[ops[i].id] = ops[i].size; live += ops[i].size; if (live > peak) peak = live; }
    else live -= sz[ops[i].id];
  }
  CK(cuInit(0)); CUdevice dev; CK(cuDeviceGet(&dev, 0)); CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev)); CK(cuCtxSetCurrent(ctx));
  CUmemoryPool pool; CK(cuDeviceGetDefaultMemPool(&pool, dev));
  cuuint64_t threshold = UINT64_MAX;
  CK(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  CUstream *s = (CUstream *)malloc(streams * sizeof(CUstream));
  for (int i = 0; i < streams; i++) CK(cuStreamCreate(&s[i], CU_STREAM_NON_BLOCKING));
  CUevent ev; CK(cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING));
  for (int r = 0; r < replays; r++) {
    cuuint64_t zero = 0;
    CK(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &zero));
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
      Op *op = &ops[i];
      if (op->kind == 'a') {
        CK(cuMemAllocAsync(&ptr[op->id], op->size, s[op->stream]));
        home[op->id] = op->stream;
      } else {
        CUstream own = s[home[op->id]];
        if (op->stream >= 0) {
          CK(cuEventRecord(ev, s[op->stream]));
          CK(cuStreamWaitEvent(own, ev, 0));
        }
        CK(cuMemFreeAsync(ptr[op->id], own));
      }
    }
    double t = now() - t0;
    CK(cuCtxSynchronize());
    cuuint64_t high = 0;
    CK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &high));
    printf("driver pool replay %d (%s): %.3f us/op, peak reserved %llu / peak requested %llu = %.4f\n",
           r, r == 0 ? "cold" : "warm", t * 1e6 / n, (unsigned long long)high,
           (unsigned long long)peak, (double)high / (double)peak);
  }
  return 0;
}
