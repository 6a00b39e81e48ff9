package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/**
 * The types whose matrices the CPU backend repacks in groups of 16 rows at load, and what each takes: Q4_K
 * ({@link Q4_KInterleaved}), Q5_K and Q6_K ({@link Q5_KInterleaved} and {@link Q6_KInterleaved} with 512-bit vectors,
 * {@link Q5_KInterleaved256} and {@link Q6_KInterleaved256} with 256-bit ones), and where the vectors are 256 bits
 * Q2_K, Q3_K, Q4_0, Q8_0 and IQ4_XS ({@link Q2_KInterleaved}, {@link Q3_KInterleaved}, {@link Q4_0Interleaved},
 * {@link Q8_0Interleaved}, {@link IQ4_XSInterleaved}) too.
 */
public final class InterleavedRows {

    private InterleavedRows() {}

    /**
     * The types repacked on every machine that runs the repacked kernels, in words, for what tells a user of them
     * (option descriptions, the plan's header): a constant, so that annotations can take it. {@link #types()} adds Q2_K,
     * Q3_K, Q4_0, Q8_0 and IQ4_XS where this machine repacks them too.
     */
    public static final String TYPES = "Q4_K, Q5_K and Q6_K";

    /** Rows per group: a product of repacked rows takes whole groups. */
    public static final int ROWS = Q4_KInterleaved.ROWS;

    /** Whether this machine runs the repacked kernels: they take 512-bit vectors, or 256-bit ones in halves. */
    public static boolean available() {
        return Simd.FUSED || Simd.HALVES;
    }

    /** The types this machine repacks, in words; a test checks they are exactly those {@link #fitsShape} takes. */
    public static String types() {
        return Simd.HALVES ? "Q2_K, Q3_K, Q4_0, Q8_0, IQ4_XS, Q4_K, Q5_K and Q6_K" : TYPES;
    }

    /**
     * Whether the one-token kernels of repacked rows read the tile pairs of activations prepared in {@code order} (Q2_K's
     * is Q3_K's); Q8_0's and IQ4_XS's read their natural code pairs instead ({@link LaneOrder#readByHalves()}).
     */
    static boolean reads(LaneOrder order) {
        return order == Q4_K.PAIRS || order == Q6_K.PAIRS || Simd.HALVES && (order == Q3_K.PAIRS || order == Q4_0.PAIRS);
    }

    /**
     * Whether {@code type}'s one-token kernel of repacked rows on this machine multiplies telescoped code pairs
     * ({@link PreparedActivations#stepPairs()}): Q3_K's, Q4_K's, Q5_K's, Q6_K's and Q4_0's with 256-bit vectors.
     */
    static boolean steps(GgmlType type) {
        return Simd.HALVES && (type == GgmlType.Q3_K || type == GgmlType.Q4_K || type == GgmlType.Q5_K
                || type == GgmlType.Q6_K || type == GgmlType.Q4_0);
    }

    /** How many telescoped pairs {@code type}'s kernel reads for {@code values} activations ({@link #steps(GgmlType)}). */
    static int stepCount(GgmlType type, int values) {
        return switch (type) {
            case Q3_K -> values / 16 * Q3_KInterleaved.STEPS;
            case Q5_K -> values / 32 * Q5_KInterleaved256.STEPS;
            case Q4_0 -> values / 32 * Q4_0Interleaved.STEPS;
            case Q6_K -> values / 16 * Q6_KInterleaved256.STEPS;
            default -> values / 2;
        };
    }

    /**
     * Fails unless {@code x} holds the telescoped pairs of {@code type}'s one-token kernel, which only activations
     * prepared for that type do (Q4_K's and Q5_K's are prepared in the same order and rounding, with pairs of their own).
     */
    static void requireSteps(GgmlType type, PreparedActivations x) {
        if (x.steppedType() != type) {
            throw new IllegalArgumentException(type + "'s one-token kernel takes activations prepared for " + type
                    + ", got ones prepared for " + (x.steppedType() == null ? "another type" : x.steppedType()));
        }
    }

    /** Fills {@code steps} from {@code pairs} for {@code type}'s kernel ({@link #steps(GgmlType)}), pairs {@code from ..}. */
    static void steps(GgmlType type, int[] pairs, int from, int count, int[] steps) {
        switch (type) {
            case Q4_K -> Q4_KInterleaved.steps(pairs, from, count, steps);
            case Q6_K -> Q6_KInterleaved256.steps(pairs, from, count, steps);
            case Q3_K -> Q3_KInterleaved.steps(pairs, from, count, steps);
            case Q5_K -> Q5_KInterleaved256.steps(pairs, from, count, steps);
            case Q4_0 -> Q4_0Interleaved.steps(pairs, from, count, steps);
            default -> throw new IllegalArgumentException(type + " takes no telescoped pairs");
        }
    }

    /**
     * Whether a machine with this one's vectors repacks {@code type}'s matrices: Q2_K, Q3_K, Q4_0, Q8_0 and IQ4_XS only
     * with 256-bit ones.
     */
    static boolean repacks(GgmlType type) {
        return type == GgmlType.Q4_K || type == GgmlType.Q5_K || type == GgmlType.Q6_K
                || (type == GgmlType.Q3_K || type == GgmlType.Q2_K || type == GgmlType.Q4_0 || type == GgmlType.Q8_0
                || type == GgmlType.IQ4_XS) && Simd.HALVES;
    }

    /**
     * Whether a matrix of {@code type} with {@code rows} rows of {@code width} values can be repacked on a machine with
     * this one's vectors ({@link #repacks}).
     */
    public static boolean fitsShape(GgmlType type, long rows, long width) {
        return repacks(type) && Q4_KInterleaved.fitsShape(rows, width);
    }

    /** Whether this machine repacks a matrix of {@code type} with {@code rows} rows of {@code width} values. */
    public static boolean fits(GgmlType type, int rows, int width) {
        return available() && fitsShape(type, rows, width);
    }

    /** Bytes of {@code rows} repacked rows of {@code width} values of {@code type}. */
    public static long bytes(GgmlType type, long rows, int width) {
        return switch (type) {
            case Q2_K -> Q2_KInterleaved.bytes(rows, width);
            case Q3_K -> Q3_KInterleaved.bytes(rows, width);
            case Q4_0 -> Q4_0Interleaved.bytes(rows, width);
            case Q8_0 -> Q8_0Interleaved.bytes(rows, width);
            case IQ4_XS -> IQ4_XSInterleaved.bytes(rows, width);
            case Q4_K -> Q4_KInterleaved.bytes(rows, width);
            case Q5_K -> Simd.HALVES ? Q5_KInterleaved256.bytes(rows, width) : Q5_KInterleaved.bytes(rows, width);
            case Q6_K -> Simd.HALVES ? Q6_KInterleaved256.bytes(rows, width) : Q6_KInterleaved.bytes(rows, width);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        };
    }

    /** The repacking of {@code type}'s class ({@link Q4_KInterleaved#repack} and the others'). */
    public static void repack(GgmlType type, MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup,
            int toGroup, MemorySegment dst, long dstOffset) {
        if (!available()) {
            throw new IllegalStateException("repacked rows need 512- or 256-bit vectors; this JVM's are "
                    + Simd.F.vectorBitSize() + " bits");
        }
        if (Simd.HALVES) {
            repackHalves(type, src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            return;
        }
        switch (type) {
            // Q2_K's, Q3_K's, Q4_0's, Q8_0's and IQ4_XS's layouts, which this machine does not repack by itself
            // (repacks) but lays out on request, as repackHalves does
            case Q2_K -> Q2_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q3_K -> Q3_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q4_0 -> Q4_0Interleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q8_0 -> Q8_0Interleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case IQ4_XS -> IQ4_XSInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q4_K -> Q4_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q5_K -> Q5_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q6_K -> Q6_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }

    /**
     * The repacking that {@link #dotHalves} reads, whatever this machine's vectors: {@link #repack}'s with 256-bit ones.
     * Of the same size as the 512-bit layouts, type by type ({@link #bytes}).
     */
    static void repackHalves(GgmlType type, MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup,
            int toGroup, MemorySegment dst, long dstOffset) {
        switch (type) {
            case Q2_K -> Q2_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q3_K -> Q3_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q4_0 -> Q4_0Interleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q8_0 -> Q8_0Interleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case IQ4_XS -> IQ4_XSInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q4_K -> Q4_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q5_K -> Q5_KInterleaved256.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            case Q6_K -> Q6_KInterleaved256.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }

    /**
     * The product of {@code type}'s class in 256-bit vectors whatever this machine's ({@link Q4_KInterleaved#dotHalves}
     * and the others'), unchecked, of rows {@link #repackHalves} repacked: what {@link #dot} runs with 256-bit vectors,
     * for tests on every machine.
     */
    static void dotHalves(GgmlType type, MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        switch (type) {
            case Q2_K -> Q2_KInterleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q3_K -> Q3_KInterleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q4_0 -> Q4_0Interleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q8_0 -> Q8_0Interleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case IQ4_XS -> IQ4_XSInterleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q4_K -> Q4_KInterleaved.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q5_K -> Q5_KInterleaved256.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q6_K -> Q6_KInterleaved256.dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }

    /** The product of {@code type}'s class ({@link Q4_KInterleaved#dot} and the others'). */
    public static void dot(GgmlType type, MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        switch (type) {
            case Q2_K -> Q2_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q3_K -> Q3_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q4_0 -> Q4_0Interleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q8_0 -> Q8_0Interleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case IQ4_XS -> IQ4_XSInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
            case Q4_K -> Q4_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            case Q5_K -> {
                if (Simd.HALVES) {
                    Q5_KInterleaved256.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
                } else {
                    Q5_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
                }
            }
            case Q6_K -> {
                if (Simd.HALVES) {
                    Q6_KInterleaved256.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
                } else {
                    Q6_KInterleaved.dot(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
                }
            }
            default -> throw new IllegalArgumentException(type + " rows are not repacked");
        }
    }
}
