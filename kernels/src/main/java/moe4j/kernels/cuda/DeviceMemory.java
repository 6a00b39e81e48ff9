package moe4j.kernels.cuda;

import static moe4j.kernels.cuda.CudaDriver.check;

import java.util.EnumMap;
import java.util.IdentityHashMap;
import java.util.Locale;
import java.util.Map;

import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Device memory of one backend: every allocation is accounted to a use, so that running out names what
 * did not fit and what the device already holds instead of failing somewhere later. Buffers may be
 * closed on any thread, so every driver call first makes the backend's context current on it.
 */
final class DeviceMemory {

    /** What an allocation is for. */
    enum Use {
        WEIGHTS("weights"), KV_CACHE("KV cache"), ACTIVATIONS("activations");

        private final String label;

        Use(String label) {
            this.label = label;
        }
    }

    private record Allocation(long bytes, Use use) {}

    private final String device;
    private final Runnable makeCurrent;
    private final Map<CUdeviceptr, Allocation> live = new IdentityHashMap<>();
    private final Map<Use, Long> used = new EnumMap<>(Use.class);
    private boolean closed;

    DeviceMemory(String device, Runnable makeCurrent) {
        this.device = device;
        this.makeCurrent = makeCurrent;
        for (Use u : Use.values()) {
            used.put(u, 0L);
        }
    }

    /** {@code bytes} of device memory for {@code what}. */
    synchronized CUdeviceptr allocate(long bytes, Use use, String what) {
        if (closed) {
            throw new IllegalStateException("the CUDA backend of " + device + " is closed");
        }
        if (bytes <= 0) {
            throw new IllegalArgumentException("cannot allocate " + bytes + " bytes for " + what);
        }
        makeCurrent.run();
        CUdeviceptr p = new CUdeviceptr();
        int result = JCudaDriver.cuMemAlloc(p, bytes);
        if (result == CUresult.CUDA_ERROR_OUT_OF_MEMORY) {
            throw new CudaOutOfMemoryException(device + " is out of memory: " + size(bytes) + " for " + what
                    + " does not fit (" + summary() + ")");
        }
        check(result, "cuMemAlloc of " + size(bytes) + " for " + what + " on " + device);
        live.put(p, new Allocation(bytes, use));
        used.merge(use, bytes, Long::sum);
        return p;
    }

    /** Frees an allocation of this backend; nothing once the backend is closed (its context freed everything). */
    synchronized void free(CUdeviceptr p) {
        Allocation a = live.remove(p);
        if (a == null || closed) {
            return;
        }
        used.merge(a.use, -a.bytes, Long::sum);
        makeCurrent.run();
        check(JCudaDriver.cuMemFree(p), "cuMemFree on " + device);
    }

    /** Throws unless {@code bytes} more fit on the device now. */
    synchronized void requireFree(long bytes, String what) {
        makeCurrent.run();
        long[] free = new long[1];
        long[] total = new long[1];
        check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo on " + device);
        if (bytes > free[0]) {
            throw new CudaOutOfMemoryException(what + " need " + size(bytes) + " of device memory but " + device
                    + " has " + size(free[0]) + " free of " + size(total[0]));
        }
    }

    synchronized long used(Use use) {
        return used.get(use);
    }

    /** What this backend holds and what the device has left, for messages. */
    synchronized String summary() {
        StringBuilder s = new StringBuilder("in use by moe4j:");
        for (Use u : Use.values()) {
            s.append(' ').append(u.label).append(' ').append(size(used.get(u))).append(',');
        }
        makeCurrent.run();
        long[] free = new long[1];
        long[] total = new long[1];
        if (JCudaDriver.cuMemGetInfo(free, total) == CUresult.CUDA_SUCCESS) {
            s.append(" free ").append(size(free[0])).append(" of ").append(size(total[0]));
        } else {
            s.setLength(s.length() - 1);
        }
        return s.toString();
    }

    /** Frees everything still allocated; later frees do nothing. */
    synchronized void close() {
        if (closed) {
            return;
        }
        makeCurrent.run();
        for (CUdeviceptr p : live.keySet()) {
            JCudaDriver.cuMemFree(p);
        }
        live.clear();
        closed = true;
    }

    static String size(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
