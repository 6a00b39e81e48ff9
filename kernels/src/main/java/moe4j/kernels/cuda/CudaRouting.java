package moe4j.kernels.cuda;

import java.util.concurrent.atomic.AtomicBoolean;

import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;
import moe4j.kernels.ExpertRouting;

/**
 * Routing that lives on the device: the router kernel writes the chosen experts and weights here and
 * the expert kernels read them, so a step never waits for the host. The inherited host arrays stay
 * unused.
 */
final class CudaRouting extends ExpertRouting {

    /** Token rows per tile of the grouped expert products (the matrix kernel's tile height). */
    static final int TILE_ROWS = 64;

    final CUdeviceptr ids;
    final CUdeviceptr weights;
    final CUdeviceptr order;
    final CUdeviceptr position;
    final CUdeviceptr tiles;
    /** Per token, the blocks of a fused router product that finished (route_f32); zero between launches. */
    final CUdeviceptr done;
    private final DeviceMemory memory;
    private final AtomicBoolean closed = new AtomicBoolean();

    CudaRouting(DeviceMemory memory, int experts, int k, int capacity) {
        super(experts, k, capacity);
        this.memory = memory;
        int slots = k * capacity;
        CUdeviceptr[] p = new CUdeviceptr[6];
        long[] bytes = {4L * slots, 4L * slots, 4L * slots, 4L * slots, 12L * maxTiles(slots), 4L * capacity};
        try {
            for (int i = 0; i < p.length; i++) {
                p[i] = memory.allocate(bytes[i], DeviceMemory.Use.ACTIVATIONS, "expert routing");
            }
            CudaDriver.check(JCudaDriver.cuMemsetD32(p[5], 0, capacity), "clearing the routing counters");
        } catch (RuntimeException e) {
            for (CUdeviceptr q : p) {
                if (q != null) {
                    memory.free(q);
                }
            }
            throw e;
        }
        ids = p[0];
        weights = p[1];
        order = p[2];
        position = p[3];
        tiles = p[4];
        done = p[5];
    }

    /**
     * Tiles that {@code assignments} rows can need: each active expert's run is cut into tiles of
     * {@link #TILE_ROWS}, so at most one partial tile per active expert beyond the full ones.
     */
    int maxTiles(int assignments) {
        return (assignments + TILE_ROWS - 1) / TILE_ROWS + Math.min(experts(), assignments);
    }

    @Override
    public void close() {
        if (!closed.getAndSet(true)) {
            for (CUdeviceptr p : new CUdeviceptr[] {ids, weights, order, position, tiles, done}) {
                memory.free(p);
            }
        }
    }
}
