// What a kernel running meanwhile does to cuMemMap / cuMemSetAccess / cuMemUnmap, and whether
// pieces of one handle can be mapped apart (issue 19: cheaper KV pages).
// nvcc -O2 -o slab_pages slab_pages.cu -lcuda && ./slab_pages
// 160 pages of 2 MiB: one handle per page, each mapped at VA slot 2p (never adjacent), or
// handles of H pages mapped whole. Per page: map, set access per mapping, unmap; means over
// the rounds. Recorded on an H200, driver 580: mapping a piece of a handle (cuMemMap with a
// nonzero offset) answers CUDA_ERROR_NOT_SUPPORTED (801), so a handle is mapped whole or not
// at all; the last line checks that this still holds.
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { \
    fprintf(stderr, "%s failed: %d (line %d)\n", #x, r, __LINE__); exit(1); } } while (0)

__global__ void spin(unsigned long long ns) {
    unsigned long long start;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    for (;;) {
        unsigned long long now;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - start > ns) break;
    }
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static const size_t PAGE = 2u << 20;
enum { PAGES = 160 };

static void run(const char *name, int per_handle, int rounds, int during_kernel) {
    int handles = PAGES / per_handle;
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CUdeviceptr va;
    CK(cuMemAddressReserve(&va, PAGE * PAGES * 2, 0, 0, 0));
    CUmemGenericAllocationHandle h[PAGES];
    for (int i = 0; i < handles; i++) CK(cuMemCreate(&h[i], PAGE * per_handle, &prop, 0));
    CUstream s;
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    double t_map = 0, t_access = 0, t_unmap = 0;
    for (int r = 0; r < rounds; r++) {
        if (during_kernel) {
            spin<<<132, 32, 0, (cudaStream_t)s>>>(400ull * 1000 * 1000);
        }
        double t = now_us();
        size_t hs = PAGE * per_handle;
        for (int i = 0; i < handles; i++) CK(cuMemMap(va + 2 * i * hs, hs, 0, h[i], 0));
        t_map += now_us() - t;
        t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemSetAccess(va + 2 * i * hs, hs, &acc, 1));
        t_access += now_us() - t;
        t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemUnmap(va + 2 * i * hs, hs));
        t_unmap += now_us() - t;
        if (during_kernel) CK(cuStreamSynchronize(s));
    }
    double n = (double)PAGES * rounds;
    printf("%-34s per page: map %6.2f  set access %6.2f  unmap %6.2f us\n", name, t_map / n,
           t_access / n, t_unmap / n);
    for (int i = 0; i < handles; i++) CK(cuMemRelease(h[i]));
    CK(cuMemAddressFree(va, PAGE * PAGES * 2));
    CK(cuStreamDestroy(s));
}

int main(void) {
    CUdevice dev;
    CUcontext ctx;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    char name[128];
    CK(cuDeviceGetName(name, sizeof name, dev));
    printf("%s\n", name);
    run("warm-up", 1, 1, 0);
    run("2 MiB handles", 1, 5, 0);
    run("2 MiB handles, kernel runs", 1, 3, 1);
    run("8 MiB handles", 4, 5, 0);
    run("8 MiB handles, kernel runs", 4, 3, 1);
    run("32 MiB handles", 16, 5, 0);
    run("32 MiB handles, kernel runs", 16, 3, 1);
    {
        CUmemAllocationProp prop = {};
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        CUmemGenericAllocationHandle big;
        CUdeviceptr va;
        CK(cuMemCreate(&big, 8 * PAGE, &prop, 0));
        CK(cuMemAddressReserve(&va, PAGE, 0, 0, 0));
        printf("cuMemMap of a 2 MiB piece at offset 2 MiB of an 8 MiB handle: %d\n",
               (int)cuMemMap(va, PAGE, PAGE, big, 0));
        CK(cuMemAddressFree(va, PAGE));
        CK(cuMemRelease(big));
    }
    return 0;
}
