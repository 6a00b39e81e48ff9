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
