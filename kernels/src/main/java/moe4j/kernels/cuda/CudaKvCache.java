package moe4j.kernels.cuda;

import java.util.concurrent.atomic.AtomicBoolean;

import jcuda.driver.CUdeviceptr;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;

/**
 * A key/value cache in device memory, laid out as the CPU backend's: for each layer a key plane then a
 * value plane of {@code contextLength} rows of {@code kvDim} values, f16 or f32.
 */
final class CudaKvCache implements KvCache {

    private final DeviceMemory memory;
    private final CUdeviceptr data;
    private final int layers;
    private final int contextLength;
    private final int kvDim;
    private final KvCacheType type;
    private final long planeBytes;
    private final AtomicBoolean closed = new AtomicBoolean();

    CudaKvCache(DeviceMemory memory, CUdeviceptr data, int layers, int contextLength, int kvDim, KvCacheType type,
                long planeBytes) {
        this.memory = memory;
        this.data = data;
        this.layers = layers;
        this.contextLength = contextLength;
        this.kvDim = kvDim;
        this.type = type;
        this.planeBytes = planeBytes;
    }

    CUdeviceptr keys(int layer) {
        return data.withByteOffset(planeBytes * (2L * layer));
    }

    CUdeviceptr values(int layer) {
        return data.withByteOffset(planeBytes * (2L * layer + 1));
    }

    @Override
    public int layers() { return layers; }

    @Override
    public int contextLength() { return contextLength; }

    @Override
    public int kvDim() { return kvDim; }

    @Override
    public KvCacheType type() { return type; }

    @Override
    public long byteSize() { return planeBytes * 2L * layers; }

    @Override
    public void close() {
        if (!closed.getAndSet(true)) {
            memory.free(data);
        }
    }

    @Override
    public String toString() {
        return "cuda " + type + " KV cache (" + layers + " layers, " + contextLength + " positions)";
    }
}
