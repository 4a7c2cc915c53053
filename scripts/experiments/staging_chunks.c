// Minimal raw loop: a device-to-host / host-to-device copy of N bytes through two or more
// pinned staging buffers of CHUNK bytes (the host memcpy of one chunk overlapping the DMA of
// the next), against one cuMemcpy*Async into pageable memory and the pinned floor.
// Build on the GPU machine: gcc -O2 staging_chunks.c -I/usr/local/cuda/include -lcuda
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define CK(x) do { CUresult r = (x); if (r) { printf("%s failed %d\n", #x, r); exit(1); } } while (0)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
#define REPS 41
#define MAXB 8
static CUstream s; static CUevent ev[MAXB]; static char *stage[MAXB];
static void staged(int dtoh, CUdeviceptr d, char *host, size_t n, size_t chunk, int nbuf) {
    size_t chunks = (n + chunk - 1) / chunk;
    if (dtoh) {
        // queue up to nbuf chunks ahead; copy out chunk i once its event completed
        size_t queued = 0;
        for (size_t i = 0; i < chunks; i++) {
            while (queued < chunks && queued < i + nbuf) {
                size_t off = queued * chunk, len = n - off < chunk ? n - off : chunk;
                CK(cuMemcpyDtoHAsync(stage[queued % nbuf], d + off, len, s));
                CK(cuEventRecord(ev[queued % nbuf], s));
                queued++;
            }
            size_t off = i * chunk, len = n - off < chunk ? n - off : chunk;
            CK(cuEventSynchronize(ev[i % nbuf]));
            memcpy(host + off, stage[i % nbuf], len);
        }
    } else {
        for (size_t i = 0; i < chunks; i++) {
            size_t off = i * chunk, len = n - off < chunk ? n - off : chunk;
            if (i >= (size_t)nbuf) CK(cuEventSynchronize(ev[i % nbuf]));
            memcpy(stage[i % nbuf], host + off, len);
            CK(cuMemcpyHtoDAsync(d + off, stage[i % nbuf], len, s));
            CK(cuEventRecord(ev[i % nbuf], s));
        }
        CK(cuStreamSynchronize(s));
    }
}
int main(void) {
    CUdevice dev; CUcontext ctx; CUdeviceptr d;
    CK(cuInit(0)); CK(cuDeviceGet(&dev, 0)); CK(cuDevicePrimaryCtxRetain(&ctx, dev)); CK(cuCtxSetCurrent(ctx));
    CK(cuStreamCreate(&s, 0));
    size_t maxn = 64 << 20;
    CK(cuMemAlloc(&d, maxn));
    char *host = malloc(maxn); memset(host, 1, maxn);
    char *pin; CK(cuMemHostAlloc((void **)&pin, maxn, 0));
    for (int i = 0; i < MAXB; i++) { CK(cuMemHostAlloc((void **)&stage[i], 4 << 20, CU_MEMHOSTALLOC_PORTABLE)); CK(cuEventCreate(&ev[i], CU_EVENT_DISABLE_TIMING)); }
    size_t sizes[] = {4 << 10, 2 << 20, 64 << 20};
    size_t chunks[] = {256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20};
    int bufs[] = {2, 3, 4};
    for (int dtoh = 1; dtoh >= 0; dtoh--)
    for (int si = 0; si < 3; si++) {
        size_t n = sizes[si]; double t[REPS];
        for (int r = 0; r < REPS; r++) { double a = now();
            if (dtoh) CK(cuMemcpyDtoHAsync(host, d, n, s)); else CK(cuMemcpyHtoDAsync(d, host, n, s));
            CK(cuStreamSynchronize(s)); t[r] = now() - a; }
        qsort(t, REPS, sizeof t[0], cmp);
        printf("%s %8zu KiB pageable          %9.1f us\n", dtoh ? "read " : "write", n >> 10, t[REPS / 2] * 1e6);
        for (int r = 0; r < REPS; r++) { double a = now();
            if (dtoh) CK(cuMemcpyDtoHAsync(pin, d, n, s)); else CK(cuMemcpyHtoDAsync(d, pin, n, s));
            CK(cuStreamSynchronize(s)); t[r] = now() - a; }
        qsort(t, REPS, sizeof t[0], cmp);
        printf("%s %8zu KiB pinned            %9.1f us\n", dtoh ? "read " : "write", n >> 10, t[REPS / 2] * 1e6);
        for (int ci = 0; ci < 5; ci++) for (int bi = 0; bi < 3; bi++) {
            if (chunks[ci] > n && ci > 0) continue;
            for (int r = 0; r < REPS; r++) { double a = now(); staged(dtoh, d, host, n, chunks[ci], bufs[bi]); t[r] = now() - a; }
            qsort(t, REPS, sizeof t[0], cmp);
            printf("%s %8zu KiB staged %4zu KiB x%d %9.1f us\n", dtoh ? "read " : "write", n >> 10, chunks[ci] >> 10, bufs[bi], t[REPS / 2] * 1e6);
        }
    }
    // host memcpy alone, 64 MiB pinned -> pageable
    double t[REPS];
    for (int r = 0; r < REPS; r++) { double a = now(); memcpy(host, pin, maxn); t[r] = now() - a; }
    qsort(t, REPS, sizeof t[0], cmp);
    printf("memcpy 64 MiB pinned->pageable %9.1f us\n", t[REPS / 2] * 1e6);
    return 0;
}
