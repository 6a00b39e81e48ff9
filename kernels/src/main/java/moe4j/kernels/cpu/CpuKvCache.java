package moe4j.kernels.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicBoolean;

import moe4j.gguf.GgmlType;
import moe4j.gguf.HugePages;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Off-heap key/value cache: for each layer a key plane then a value plane; within a plane each key/value head's
 * {@code contextLength} positions lie together, {@code headDim} values each in the chosen storage type. Attention
 * reads one head's positions at a time, so this keeps its reads sequential (with positions as whole rows, a head's
 * slices were 256 bytes a row apart, which the hardware prefetchers follow poorly from DRAM).
 */
final class CpuKvCache implements KvCache {

    private static final ValueLayout.OfFloat FLOAT_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int layers;
    private final int contextLength;
    private final int kvHeads;
    private final int headDim;
    private final KvCacheType type;
    private final long headBytes;
    /** The weight format of the storage type: it decodes the cache as it decodes weights (and quantizes Q8_0). */
    private final QuantFormat format;
    private final Arena arena;
    private final MemorySegment memory;
    private final AtomicBoolean closed = new AtomicBoolean();

    CpuKvCache(int layers, int contextLength, int kvHeads, int headDim, KvCacheType type) {
        if (layers <= 0 || contextLength <= 0 || kvHeads <= 0 || headDim <= 0) {
            throw new IllegalArgumentException("invalid KV cache shape: " + layers + " layers, context "
                    + contextLength + ", " + kvHeads + " heads of " + headDim + " values per position");
        }
        if (type == KvCacheType.Q8_0 && headDim % 32 != 0) {
            throw new IllegalArgumentException("a q8_0 KV cache needs a head size that is a multiple of 32, got " + headDim);
        }
        this.layers = layers;
        this.contextLength = contextLength;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.type = type;
        GgmlType storage = switch (type) {
            case F32 -> GgmlType.F32;
            case F16 -> GgmlType.F16;
            case Q8_0 -> GgmlType.Q8_0;
        };
        this.headBytes = storage.bytesFor(headDim);
        this.format = QuantFormats.of(storage);
        long bytes;
        try {
            bytes = Math.multiplyExact(Math.multiplyExact(2L * layers * kvHeads, (long) contextLength), headBytes);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("KV cache size overflows: " + layers + " layers x context "
                    + contextLength + " x " + kvHeads + " heads x " + headBytes + " bytes");
        }
        this.arena = Arena.ofShared();
        try {
            // 2 MiB pages where Linux gives them: a token's attention reads every layer's and head's positions, a
            // 4 KiB page each 16 of them, which with the weights in 2 MiB pages were most of a step's TLB misses
            this.memory = HugePages.allocateOrPlain(bytes, arena);
        } catch (OutOfMemoryError e) {
            arena.close();
            throw new IllegalStateException("cannot allocate a " + type + " KV cache of " + (bytes >> 20)
                    + " MiB (" + layers + " layers, context " + contextLength + ", " + kvHeads * headDim
                    + " values per position); reduce the context length", e);
        }
    }

    private long offset(int layer, int plane, int head, int pos) {
        return ((((long) layer * 2 + plane) * kvHeads + head) * contextLength + pos) * headBytes;
    }

    /** Stores {@code kvDim} values of {@code src} as position {@code pos} of the key (plane 0) or value (plane 1) plane. */
    void store(int layer, int plane, int pos, float[] src, int srcOffset) {
        for (int head = 0; head < kvHeads; head++) {
            long off = offset(layer, plane, head, pos);
            int from = srcOffset + head * headDim;
            switch (type) {
                case F32 -> MemorySegment.copy(src, from, memory, FLOAT_LE, off, headDim);
                case F16 -> {
                    for (int i = 0; i < headDim; i++) {
                        memory.set(SHORT_LE, off + 2L * i, Float.floatToFloat16(src[from + i]));
                    }
                }
                case Q8_0 -> format.quantize(src, from, headDim, memory, off);
            }
        }
    }

    /**
     * Decodes head {@code head}'s values at positions {@code pos .. pos + count - 1} of a plane into
     * {@code dst[dstOffset + p*headDim ..]}: one contiguous region, decoded by the weight format of the same type.
     */
    void loadRows(int layer, int plane, int head, int pos, int count, float[] dst, int dstOffset) {
        format.dequantize(memory, offset(layer, plane, head, pos), dst, dstOffset, count * headDim);
    }

    int kvHeads() { return kvHeads; }

    int headDim() { return headDim; }

    @Override
    public int layers() { return layers; }

    @Override
    public int contextLength() { return contextLength; }

    @Override
    public int kvDim() { return kvHeads * headDim; }

    @Override
    public KvCacheType type() { return type; }

    @Override
    public long byteSize() { return memory.byteSize(); }

    @Override
    public void close() {
        if (!closed.getAndSet(true)) {
            arena.close();
        }
    }
}
