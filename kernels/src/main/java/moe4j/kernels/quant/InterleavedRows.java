package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/**
 * The types whose matrices the CPU backend repacks in groups of 16 rows at load, and what each takes: Q4_K
 * ({@link Q4_KInterleaved}), Q5_K ({@link Q5_KInterleaved}) and Q6_K ({@link Q6_KInterleaved}).
 */
public final class InterleavedRows {

    private InterleavedRows() {}

    /**
     * The repacked types in words, for what tells a user of them (option descriptions, the plan's header): a constant,
     * so that annotations can take it; a test checks it names exactly the types {@link #fitsShape} takes.
     */
    public static final String TYPES = "Q4_K, Q5_K and Q6_K";

    /** Rows per group: a product of repacked rows takes whole groups. */
    public static final int ROWS = Q4_KInterleaved.ROWS;

    /** Whether this machine runs the repacked kernels: they take 512-bit vectors, or 256-bit ones in halves. */
    public static boolean available() {
        return Simd.FUSED || Simd.HALVES;
    }

    /** Whether the one-token kernels of repacked rows read activations prepared in {@code order}. */
    static boolean reads(LaneOrder order) {
        return order == Q4_K.PAIRS || order == Q6_K.PAIRS;
    }

    /** Whether a matrix of {@code type} with {@code rows} rows of {@code width} values can be repacked, on any machine. */
    public static boolean fitsShape(GgmlType type, long rows, long width) {
        return (type == GgmlType.Q4_K || type == GgmlType.Q5_K || type == GgmlType.Q6_K)
                && Q4_KInterleaved.fitsShape(rows, width);
    }

    /** Whether this machine repacks a matrix of {@code type} with {@code rows} rows of {@code width} values. */
    public static boolean fits(GgmlType type, int rows, int width) {
        return available() && fitsShape(type, rows, width);
    }

    /** Bytes of {@code rows} repacked rows of {@code width} values of {@code type}. */
    public static long bytes(GgmlType type, long rows, int width) {
        return switch (type) {
            case Q4_K -> Q4_KInterleaved.bytes(rows, width);
            case Q5_K -> Q5_KInterleaved.bytes(rows, width);
            case Q6_K -> Q6_KInterleaved.bytes(rows, width);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        };
    }

    /** {@link Q4_KInterleaved#repack}, {@link Q5_KInterleaved#repack} or {@link Q6_KInterleaved#repack}, by {@code type}. */
    public static void repack(GgmlType type, MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup,
            int toGroup, MemorySegment dst, long dstOffset) {
        switch (type) {
            case Q4_K -> Q4_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q5_K -> Q5_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q6_K -> Q6_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }

    /** {@link Q4_KInterleaved#dot}, {@link Q5_KInterleaved#dot} or {@link Q6_KInterleaved#dot}, by {@code type}. */
    public static void dot(GgmlType type, MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        switch (type) {
            case Q4_K -> Q4_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q5_K -> Q5_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q6_K -> Q6_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }
}
