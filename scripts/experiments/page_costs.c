// What a committed 2 MiB page costs the driver, by handle size and batching (issue 19).
// nvcc -O2 -o page_costs page_costs.c -lcuda && ./page_costs
// For each layout, N pages of 2 MiB are created, mapped, made accessible, then unmapped and
// released; the time of each step is divided by N. Layouts: one handle per page with
// set access per page, one handle per page with ONE set access over the run, and handles
// of H pages (H = 4, 10, 16) mapped whole with one set access per handle.
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { \
    fprintf(stderr, "%s failed: %d (line %d)\n", #x, r, __LINE__); exit(1); } } while (0)

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void run(int pages, int per_handle, int access_per_handle, int rounds) {
    const size_t page = 2u << 20;
    size_t hsize = page * per_handle;
    int handles = pages / per_handle;
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CUdeviceptr va;
    CK(cuMemAddressReserve(&va, page * pages, 0, 0, 0));
    CUmemGenericAllocationHandle *h = malloc(sizeof(*h) * handles);
    double t_create = 0, t_map = 0, t_access = 0, t_unmap = 0, t_release = 0;
    for (int r = 0; r < rounds; r++) {
        double t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemCreate(&h[i], hsize, &prop, 0));
        t_create += now_us() - t;
        t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemMap(va + i * hsize, hsize, 0, h[i], 0));
        t_map += now_us() - t;
        t = now_us();
        if (access_per_handle) {
            for (int i = 0; i < handles; i++) CK(cuMemSetAccess(va + i * hsize, hsize, &acc, 1));
        } else {
            CK(cuMemSetAccess(va, page * pages, &acc, 1));
        }
        t_access += now_us() - t;
        t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemUnmap(va + i * hsize, hsize));
        t_unmap += now_us() - t;
        t = now_us();
        for (int i = 0; i < handles; i++) CK(cuMemRelease(h[i]));
        t_release += now_us() - t;
    }
    double n = (double)pages * rounds;
    printf("%2d page(s)/handle, set access %s: per 2 MiB page: create %6.2f  map %6.2f  "
           "access %6.2f  unmap %6.2f  release %6.2f us; map+access %6.2f us\n",
           per_handle, access_per_handle ? "per handle" : "once/run  ", t_create / n,
           t_map / n, t_access / n, t_unmap / n, t_release / n, (t_map + t_access) / n);
    CK(cuMemAddressFree(va, page * pages));
    free(h);
}

int main(void) {
    CUdevice dev;
    CUcontext ctx;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    char name[128];
    int version;
    CK(cuDeviceGetName(name, sizeof name, dev));
    CK(cuDriverGetVersion(&version));
    printf("%s, driver API %d\n", name, version);
    run(160, 1, 1, 2);  // warm-up
    run(160, 1, 1, 5);
    run(160, 1, 0, 5);
    run(160, 4, 1, 5);
    run(160, 10, 1, 5);
    run(160, 16, 1, 5);
    run(160, 16, 0, 5);
    return 0;
}
