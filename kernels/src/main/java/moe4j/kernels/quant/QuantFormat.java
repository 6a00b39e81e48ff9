package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import moe4j.gguf.GgmlType;

/**
 * One ggml tensor storage type: how its blocks decode to floats and, where supported, how floats
 * encode into blocks. Implementations are stateless singletons obtained from {@link QuantFormats}.
 *
 * <p>All element counts must be whole blocks of {@link GgmlType#blockSize()}; byte offsets refer to
 * the start of a block.
 */
public interface QuantFormat {

    GgmlType type();

    /** Elements per block. */
    default int blockSize() { return type().blockSize(); }

    /** Bytes per block. */
    default int blockBytes() { return type().blockBytes(); }

    /**
     * Dequantizes {@code count} elements (a whole number of blocks) starting at byte {@code srcOffset}
     * of {@code src} into {@code dst[dstOffset .. dstOffset + count)}. Results are bit-identical to
     * ggml's reference {@code dequantize_row_*}.
     */
    void dequantize(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int count);

    /**
     * {@link #dequantize} in scalar loops, with the same results bit for bit: for a row decoded once in a while, such
     * as a token's embedding at each step. Vector code called that rarely is never compiled by C2 and runs in the
     * interpreter or C1, where every vector operation allocates (a hundred KiB and more a token); the scalar loops
     * allocate nothing wherever they run, and decode a row of a few thousand values in microseconds.
     */
    void dequantizeScalar(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int count);

    /**
     * The dot product of {@code count} elements (whole blocks) of the row stored at byte {@code srcOffset}
     * of {@code src} with {@code x[xOffset .. xOffset + count)}. Weights are decoded exactly as by
     * {@link #dequantize} and multiplied in float32 with fused multiply-adds in a fixed order that does not
     * depend on JIT compilation, so the result is deterministic and equals {@link #dotBatch}'s bit for bit;
     * it differs from the exact dot product of the dequantized row only by float32 rounding of the sum.
     *
     * <p>The default decodes small chunks into a per-thread buffer; built-in types use fused kernels
     * that read the weights straight from {@code src}.
     */
    default float dot(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        return DecodedDot.dot(this, src, srcOffset, x, xOffset, count);
    }

    /**
     * {@link #dot} of one row with {@code nTokens} activation vectors, token {@code t} reading
     * {@code x[xOffset + t*xStride ..]} and writing {@code out[outOffset + t*outStride]}; each result is
     * bit-identical to the single-token {@link #dot}. The default decodes each chunk of the row once for all
     * tokens; types with a fused kernel currently run it per token, which measured faster than decoding
     * once with the scalar dequantizer.
     */
    default void dotBatch(MemorySegment src, long srcOffset, float[] x, int xOffset, int xStride, int nTokens,
            float[] out, int outOffset, int outStride, int count) {
        DecodedDot.checkBatch(x, xOffset, xStride, nTokens, out, outOffset, outStride, count);
        DecodedDot.dotBatch(this, src, srcOffset, x, xOffset, xStride, nTokens, out, outOffset, outStride, count);
    }

    /** How activations are rounded before they meet weights of this type, as llama.cpp's CPU backend does. */
    default ActivationRounding activationRounding() {
        return ActivationRounding.forWeights(type());
    }

    /**
     * The order this type's one-token kernel reads activations in; activations prepared without it
     * ({@link PreparedActivations#reserve(QuantFormat, int, int)} gives it) take a slower path to the same products.
     */
    default LaneOrder laneOrder() {
        return LaneOrder.NATURAL;
    }

    /**
     * Dot products of the row stored at byte {@code srcOffset} of {@code src} ({@code x.width()} elements,
     * whole blocks) with rows {@code firstRow .. firstRow + nTokens - 1} of {@code x}, which must have been
     * prepared with this type's {@link #activationRounding()}; token {@code t}'s result goes to
     * {@code out[outOffset + t*outStride]}. With two or more tokens each result is independent of {@code nTokens}
     * and {@code firstRow} bit for bit; one token (decoding) takes the type's matrix-vector kernel, which for Q4_K
     * and Q5_K sums in another order and agrees within float32 rounding. This is the product the CPU backend computes; it follows llama.cpp's numerics (rounded
     * activations) in float32 arithmetic.
     */
    default void dotPrepared(MemorySegment src, long srcOffset, PreparedActivations x, int firstRow, int nTokens,
            float[] out, int outOffset, int outStride) {
        DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset, outStride);
        int w = x.width();
        dotBatch(src, srcOffset, x.values(), firstRow * w, w, nTokens, out, outOffset, outStride, w);
    }

    /**
     * {@link #dotPrepared} of {@code rows} consecutive rows, row {@code r} stored at byte {@code srcOffset + r*rowBytes}
     * and writing {@code out[outOffset + r + t*outStride]}; every result equals {@link #dotPrepared}'s bit for bit.
     * Built-in K-quant types, IQ4_XS, Q8_0 and Q4_0 multiply tiles of four rows by four or six tokens, sharing each load
     * between several products; the other types run a token's products over all the rows before the next token's.
     */
    default void dotPreparedRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        for (int r = 0; r < rows; r++) {
            dotPrepared(src, srcOffset + r * rowBytes, x, firstRow, nTokens, out, outOffset + r, outStride);
        }
    }

    /** Whether {@link #quantize} is implemented for this type. */
    default boolean canQuantize() { return false; }

    /**
     * Quantizes {@code src[srcOffset .. srcOffset + count)} (whole blocks) into {@code dst} at byte
     * {@code dstOffset}, reproducing ggml's reference quantizer ({@code quantize_row_*_ref}).
     *
     * @throws UnsupportedOperationException when {@link #canQuantize()} is false
     */
    default void quantize(float[] src, int srcOffset, int count, MemorySegment dst, long dstOffset) {
        throw new UnsupportedOperationException("quantizing to tensor type " + type().ggmlName() + " is not supported");
    }

    /**
     * Fills {@code blocks} blocks at byte {@code dstOffset} of {@code dst} with random but valid
     * content: finite scales of modest magnitude and arbitrary quant bits. Meant for synthetic test
     * models and benchmarks.
     */
    void randomBlocks(RandomGenerator rnd, MemorySegment dst, long dstOffset, long blocks);
}
