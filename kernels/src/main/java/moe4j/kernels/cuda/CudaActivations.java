package moe4j.kernels.cuda;

import java.util.concurrent.atomic.AtomicBoolean;

import jcuda.driver.CUdeviceptr;
import moe4j.kernels.Activations;

/**
 * Device activations: row {@code i} starts {@code i * pitch} floats into {@link #data}; the pitch rounds
 * the width up to a multiple of 4 so that every row starts on 16 bytes (the kernels read rows as float4).
 */
final class CudaActivations implements Activations {

    final CUdeviceptr data;
    final int pitch;
    /**
     * Room for the first {@link #ROUNDED_ROWS} rows rounded to Q8_K (by add_rms_norm_rounded, attention_decode_rounded_*
     * or round_rows), rows {@link #roundedRowBytes} apart, then the attention's {@link #groupCounters}; or null:
     * allocated with the buffer unless {@code -Dmoe4j.cuda.roundOnce=false}.
     */
    final CUdeviceptr rounded;
    private final DeviceMemory memory;
    private final int capacity;
    private final int width;
    private final AtomicBoolean closed = new AtomicBoolean();

    CudaActivations(DeviceMemory memory, CUdeviceptr data, int capacity, int width, int pitch, CUdeviceptr rounded) {
        this.memory = memory;
        this.data = data;
        this.rounded = rounded;
        this.capacity = capacity;
        this.width = width;
        this.pitch = pitch;
    }

    static int pitchOf(int width) {
        return (width + 3) & ~3;
    }

    /**
     * Bytes from one rounded row to the next: {@code width} values rounded to Q8_K, a sum per 16 and a scale per 256,
     * padded to 16 bytes for the kernels' 16-byte loads (rounded_row_bytes in q8k.cuh).
     */
    static long roundedRowBytes(int width) {
        return ((long) width + width / 4 + width / 64 + 15) & ~15L;
    }

    /**
     * After the rounded rows: per rounded row, a counter per 256-value group (attention_decode_rounded_*), zero
     * between launches.
     */
    CUdeviceptr groupCounters() {
        return rounded.withByteOffset(roundedRows(capacity) * roundedRowBytes(width));
    }

    /** Rows a small batch may round: its tokens' rows, and its expert assignments on the direct path. */
    static final int ROUNDED_ROWS = Math.max(CudaBackend.MATVEC_MAX_TOKENS, CudaBackend.DIRECT_EXPERT_ASSIGNMENTS);

    /** Rows a buffer of {@code capacity} rows keeps room to round. */
    static int roundedRows(int capacity) {
        return Math.min(capacity, ROUNDED_ROWS);
    }

    /** Bytes of the rounded rows and their group counters. */
    static long roundedSideBytes(int capacity, int width) {
        return roundedRows(capacity) * (roundedRowBytes(width) + 4L * (width / 256));
    }

    /** Address of row {@code row}. */
    CUdeviceptr row(int row) {
        return data.withByteOffset(4L * row * pitch);
    }

    @Override
    public int capacity() { return capacity; }

    @Override
    public int width() { return width; }

    @Override
    public void close() {
        if (!closed.getAndSet(true)) {
            memory.free(data);
            if (rounded != null) {
                memory.free(rounded);
            }
        }
    }

    @Override
    public String toString() {
        return "cuda activations " + capacity + " x " + width;
    }
}
