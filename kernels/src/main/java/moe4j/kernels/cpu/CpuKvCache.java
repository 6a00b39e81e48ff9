package moe4j.kernels.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicBoolean;

import moe4j.gguf.GgmlType;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Off-heap key/value cache: for each layer a key plane then a value plane, each {@code contextLength}
 * rows of {@code kvDim} values in the chosen storage type.
 */
final class CpuKvCache implements KvCache {

    private static final ValueLayout.OfFloat FLOAT_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int layers;
    private final int contextLength;
    private final int kvDim;
    private final KvCacheType type;
    private final long rowBytes;
    private final QuantFormat q8;
    private final Arena arena;
    private final MemorySegment memory;
    private final AtomicBoolean closed = new AtomicBoolean();

    CpuKvCache(int layers, int contextLength, int kvDim, KvCacheType type) {
        if (layers <= 0 || contextLength <= 0 || kvDim <= 0) {
            throw new IllegalArgumentException("invalid KV cache shape: " + layers + " layers, context "
                    + contextLength + ", " + kvDim + " values per position");
        }
        this.layers = layers;
        this.contextLength = contextLength;
        this.kvDim = kvDim;
        this.type = type;
        this.rowBytes = switch (type) {
            case F32 -> 4L * kvDim;
            case F16 -> 2L * kvDim;
            case Q8_0 -> GgmlType.Q8_0.bytesFor(requireBlocks(kvDim));
        };
        this.q8 = type == KvCacheType.Q8_0 ? QuantFormats.of(GgmlType.Q8_0) : null;
        long bytes;
        try {
            bytes = Math.multiplyExact(Math.multiplyExact(2L * layers, (long) contextLength), rowBytes);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("KV cache size overflows: " + layers + " layers x context "
                    + contextLength + " x " + rowBytes + " bytes per row");
        }
        this.arena = Arena.ofShared();
        try {
            this.memory = arena.allocate(bytes, 64);
        } catch (OutOfMemoryError e) {
            arena.close();
            throw new IllegalStateException("cannot allocate a " + type + " KV cache of " + (bytes >> 20)
                    + " MiB (" + layers + " layers, context " + contextLength + ", " + kvDim
                    + " values per position); reduce the context length", e);
        }
    }

    private static int requireBlocks(int kvDim) {
        if (kvDim % 32 != 0) {
            throw new IllegalArgumentException("a Q8_0 KV cache needs a multiple of 32 values per position, got " + kvDim);
        }
        return kvDim;
    }

    private long offset(int layer, int plane, int pos) {
        return ((long) (layer * 2 + plane) * contextLength + pos) * rowBytes;
    }

    /** Stores {@code kvDim} values of {@code src} as position {@code pos} of the key (plane 0) or value (plane 1) plane. */
    void store(int layer, int plane, int pos, float[] src, int srcOffset) {
        long off = offset(layer, plane, pos);
        switch (type) {
            case F32 -> MemorySegment.copy(src, srcOffset, memory, FLOAT_LE, off, kvDim);
            case F16 -> {
                for (int i = 0; i < kvDim; i++) {
                    memory.set(SHORT_LE, off + 2L * i, Float.floatToFloat16(src[srcOffset + i]));
                }
            }
            case Q8_0 -> q8.quantize(src, srcOffset, kvDim, memory, off);
        }
    }

    /**
     * {@link #load} of positions {@code pos .. pos + count - 1} into {@code dst[dstOffset + p*len ..]}: one call per
     * chunk, and an F16 slice of whole vectors converted straight from the cache memory (no copy, no scratch).
     */
    void loadRows(int layer, int plane, int pos, int count, int from, int len, float[] dst, int dstOffset,
            short[] halfs) {
        if (type == KvCacheType.F16 && VectorMath.convertsHalfs(len)) {
            for (int p = 0; p < count; p++) {
                VectorMath.halfsToFloats(memory, offset(layer, plane, pos + p) + 2L * from, dst, dstOffset + p * len, len);
            }
            return;
        }
        for (int p = 0; p < count; p++) {
            load(layer, plane, pos + p, from, len, dst, dstOffset + p * len, halfs);
        }
    }

    /**
     * Decodes values {@code [from, from + len)} of position {@code pos} of a plane into {@code dst}.
     * For Q8_0, {@code from} and {@code len} are multiples of 32. {@code halfs} is scratch of at least
     * {@code len} shorts for an F16 cache: a bulk copy then an array loop, which C2 turns into vector
     * fp16 conversions (the Vector API has none, and element-wise segment reads stay scalar).
     */
    void load(int layer, int plane, int pos, int from, int len, float[] dst, int dstOffset, short[] halfs) {
        long off = offset(layer, plane, pos);
        switch (type) {
            case F32 -> MemorySegment.copy(memory, FLOAT_LE, off + 4L * from, dst, dstOffset, len);
            case F16 -> {
                MemorySegment.copy(memory, SHORT_LE, off + 2L * from, halfs, 0, len);
                for (int i = 0; i < len; i++) {
                    dst[dstOffset + i] = Float.float16ToFloat(halfs[i]);
                }
            }
            case Q8_0 -> q8.dequantize(memory, off + (long) (from / 32) * GgmlType.Q8_0.blockBytes(), dst, dstOffset, len);
        }
    }

    /** Whether a head slice starting at {@code from} of {@code len} values can be loaded on its own. */
    boolean sliceable(int from, int len) {
        return type != KvCacheType.Q8_0 || (from % 32 == 0 && len % 32 == 0);
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
    public long byteSize() { return memory.byteSize(); }

    @Override
    public void close() {
        if (!closed.getAndSet(true)) {
            arena.close();
        }
    }
}
