package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

/**
 * 16-bit float conversions (IEEE binary16 and bfloat16) with ggml's rounding and NaN conventions,
 * plus little-endian reads of such fields.
 */
public final class Halfs {

    private Halfs() {}

    /**
     * Float to IEEE binary16 bits, round to nearest even with overflow to infinity; NaN becomes
     * ggml's quiet NaN {@code 0x7E00} with the input's sign.
     */
    public static short floatToFp16(float value) {
        if (Float.isNaN(value)) {
            return (short) (((Float.floatToRawIntBits(value) >>> 16) & 0x8000) | 0x7E00);
        }
        return Float.floatToFloat16(value);
    }

    /** bfloat16 bits to float: the 16 bits become the high half of a float. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** Float to bfloat16 bits, round to nearest even; NaN keeps its top bits and is forced quiet (as ggml). */
    public static short floatToBf16(float value) {
        int u = Float.floatToRawIntBits(value);
        if ((u & 0x7FFFFFFF) > 0x7F800000) {
            return (short) ((u >>> 16) | 64);
        }
        return (short) ((u + (0x7FFF + ((u >>> 16) & 1))) >>> 16);
    }

    /** Reads the binary16 value at byte {@code offset} of {@code segment}. */
    public static float readFp16(MemorySegment segment, long offset) {
        return Float.float16ToFloat(segment.get(Layouts.SHORT_LE, offset));
    }

    /** Writes {@code value} rounded to binary16 at byte {@code offset}; returns the stored value as a float. */
    static float writeFp16(MemorySegment segment, long offset, float value) {
        short bits = floatToFp16(value);
        segment.set(Layouts.SHORT_LE, offset, bits);
        return Float.float16ToFloat(bits);
    }
}
