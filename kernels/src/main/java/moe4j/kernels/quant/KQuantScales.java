package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;

/**
 * The 12-byte packed 6-bit scale fields of the K-quants: eight (scale, min) pairs for Q4_K/Q5_K,
 * sixteen signed scales for Q3_K.
 */
final class KQuantScales {

    private KQuantScales() {}

    /** Number of scale bytes in a Q3_K/Q4_K/Q5_K block. */
    static final int BYTES = 12;

    /** Q4_K/Q5_K scale of sub-block {@code j} (0..7), 0..63; {@code offset} is the first scale byte. */
    static int scale(MemorySegment block, long offset, int j) {
        if (j < 4) {
            return BlockFormat.u8(block, offset + j) & 63;
        }
        return (BlockFormat.u8(block, offset + j + 4) & 0xF) | ((BlockFormat.u8(block, offset + j - 4) >>> 6) << 4);
    }

    /** Q4_K/Q5_K min of sub-block {@code j} (0..7), 0..63. */
    static int min(MemorySegment block, long offset, int j) {
        if (j < 4) {
            return BlockFormat.u8(block, offset + j + 4) & 63;
        }
        return (BlockFormat.u8(block, offset + j + 4) >>> 4) | ((BlockFormat.u8(block, offset + j) >>> 6) << 4);
    }

    /**
     * The eight 6-bit scales and eight minimums of the Q4_K (or Q5_K) block at {@code block} into
     * {@code dst[offset .. offset+7]} and {@code dst[offset+8 .. offset+15]}, in vectors as Q4_K's one-token kernel
     * unpacks them with 512-bit vectors, one by one with narrower ones.
     */
    static void unpackScalesAndMinimums(MemorySegment src, long block, int[] dst, int offset) {
        if (!Simd.FUSED) {
            for (int j = 0; j < 8; j++) {
                dst[offset + j] = scale(src, block + 4, j);
                dst[offset + 8 + j] = min(src, block + 4, j);
            }
            return;
        }
        IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block, Simd.LE)
                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        raw.rearrange(SCALE_MIN_LOW).lanewise(LSHR, SCALE_MIN_LOW_SHIFT).and(SCALE_MIN_LOW_MASK)
                .or(raw.rearrange(SCALE_MIN_HIGH).lanewise(LSHR, Simd.SHIFT_6).and(SCALE_MIN_HIGH_MASK)
                        .lanewise(LSHL, Simd.SHIFT_4))
                .intoArray(dst, offset);
    }

    // Vector unpacking for the fused kernels (16 lanes). Lane l of a 16-byte load from the block start
    // holds block byte l, so scale byte k is lane 4 + k for Q4_K/Q5_K.
    static final VectorShuffle<Integer> SCALE_MIN_LOW;
    static final VectorShuffle<Integer> SCALE_MIN_HIGH;
    static final IntVector SCALE_MIN_LOW_SHIFT;
    static final IntVector SCALE_MIN_LOW_MASK;
    static final IntVector SCALE_MIN_HIGH_MASK;
    static final VectorMask<Float> MIN_LANES;
    /** Lane {@code i} takes lane {@code 8 + i/2}: each sub-block's min for both of its 16-element groups. */
    static final VectorShuffle<Float> MIN_SPREAD_F;
    // Q3_K: a 16-byte load starting 4 bytes before the scales, so scale byte k is lane 4 + k.
    static final VectorShuffle<Integer> Q3_LOW;
    static final VectorShuffle<Integer> Q3_HIGH;
    static final IntVector Q3_LOW_SHIFT;
    static final IntVector Q3_HIGH_SHIFT;

    static {
        if (Simd.FUSED) {
            int[] low = new int[16];
            int[] lowShift = new int[16];
            int[] lowMask = new int[16];
            int[] high = new int[16];
            int[] highMask = new int[16];
            for (int j = 0; j < 8; j++) {
                // lanes 0..7: scales, lanes 8..15: mins, following scale(...) and min(...) above
                low[j] = 4 + (j < 4 ? j : j + 4);
                lowMask[j] = j < 4 ? 63 : 0xF;
                high[j] = 4 + (j < 4 ? 0 : j - 4);
                highMask[j] = j < 4 ? 0 : 3;
                low[8 + j] = 4 + j + 4;
                lowShift[8 + j] = j < 4 ? 0 : 4;
                lowMask[8 + j] = j < 4 ? 63 : 0xF;
                high[8 + j] = 4 + (j < 4 ? 0 : j);
                highMask[8 + j] = j < 4 ? 0 : 3;
            }
            SCALE_MIN_LOW = VectorShuffle.fromArray(Simd.I, low, 0);
            SCALE_MIN_HIGH = VectorShuffle.fromArray(Simd.I, high, 0);
            SCALE_MIN_LOW_SHIFT = IntVector.fromArray(Simd.I, lowShift, 0);
            SCALE_MIN_LOW_MASK = IntVector.fromArray(Simd.I, lowMask, 0);
            SCALE_MIN_HIGH_MASK = IntVector.fromArray(Simd.I, highMask, 0);
            MIN_LANES = VectorMask.fromLong(Simd.F, 0xFF00L);
            MIN_SPREAD_F = VectorShuffle.fromOp(Simd.F, lane -> 8 + lane / 2);
            int[] q3Low = new int[16];
            int[] q3LowShift = new int[16];
            int[] q3High = new int[16];
            int[] q3HighShift = new int[16];
            for (int i = 0; i < 16; i++) {
                // as q3Scale(...) above
                q3Low[i] = 4 + (i < 8 ? i : i - 8);
                q3LowShift[i] = i < 8 ? 0 : 4;
                q3High[i] = 4 + 8 + (i & 3);
                q3HighShift[i] = 2 * (i >>> 2);
            }
            Q3_LOW = VectorShuffle.fromArray(Simd.I, q3Low, 0);
            Q3_HIGH = VectorShuffle.fromArray(Simd.I, q3High, 0);
            Q3_LOW_SHIFT = IntVector.fromArray(Simd.I, q3LowShift, 0);
            Q3_HIGH_SHIFT = IntVector.fromArray(Simd.I, q3HighShift, 0);
        } else {
            Q3_LOW = null;
            Q3_HIGH = null;
            Q3_LOW_SHIFT = null;
            Q3_HIGH_SHIFT = null;
            SCALE_MIN_LOW = null;
            SCALE_MIN_HIGH = null;
            SCALE_MIN_LOW_SHIFT = null;
            SCALE_MIN_LOW_MASK = null;
            SCALE_MIN_HIGH_MASK = null;
            MIN_LANES = null;
            MIN_SPREAD_F = null;
        }
    }

    /**
     * Writes {@code d * scale(j)} to {@code out[outOffset + j]} and {@code dmin * min(j)} to
     * {@code out[outOffset + 8 + j]} for the Q4_K/Q5_K block at {@code block} (scales at byte 4): the same
     * float products the dequantizers form, computed in one vector pass instead of sixteen scalar unpackings.
     */
    static void scaleMinProducts(MemorySegment src, long block, float d, float dmin, float[] out, int outOffset) {
        IntVector raw = ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block, Simd.LE)
                .convertShape(B2I, Simd.I, 0)).and(0xFF);
        IntVector low = raw.rearrange(SCALE_MIN_LOW).lanewise(LSHR, SCALE_MIN_LOW_SHIFT)
                .and(SCALE_MIN_LOW_MASK);
        IntVector high = raw.rearrange(SCALE_MIN_HIGH).lanewise(LSHR, Simd.SHIFT_6)
                .and(SCALE_MIN_HIGH_MASK).lanewise(LSHL, Simd.SHIFT_4);
        FloatVector codes = (FloatVector) low.or(high).convert(I2F, 0);
        FloatVector.broadcast(Simd.F, d).blend(dmin, MIN_LANES).mul(codes).intoArray(out, outOffset);
    }

    /**
     * Writes {@code d * q3Scale(i)} to {@code out[outOffset + i]} for the sixteen Q3_K groups whose scale
     * bytes start at {@code scalesOffset} (at least 4 bytes into the block, so the vector load stays inside).
     */
    static void q3ScaleProducts(MemorySegment src, long scalesOffset, float d, float[] out, int outOffset) {
        IntVector raw = ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, scalesOffset - 4, Simd.LE)
                .convertShape(B2I, Simd.I, 0)).and(0xFF);
        IntVector low = raw.rearrange(Q3_LOW).lanewise(LSHR, Q3_LOW_SHIFT).and(0xF);
        IntVector high = raw.rearrange(Q3_HIGH).lanewise(LSHR, Q3_HIGH_SHIFT).and(3)
                .lanewise(LSHL, Simd.SHIFT_4);
        ((FloatVector) low.or(high).sub(32).convert(I2F, 0)).mul(d).intoArray(out, outOffset);
    }

    /** Packs eight 6-bit scales and mins (each 0..63) into the Q4_K/Q5_K layout at {@code offset}. */
    static void packScaleMin(int[] scales, int[] mins, MemorySegment block, long offset) {
        for (int j = 0; j < 4; j++) {
            int highScale = scales[j + 4] >>> 4;
            int highMin = mins[j + 4] >>> 4;
            block.set(Layouts.BYTE, offset + j, (byte) (scales[j] | (highScale << 6)));
            block.set(Layouts.BYTE, offset + j + 4, (byte) (mins[j] | (highMin << 6)));
            block.set(Layouts.BYTE, offset + j + 8, (byte) ((scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4)));
        }
    }

    /** Q3_K signed scale of group {@code i} (0..15, 16 elements each), -32..31. */
    static int q3Scale(MemorySegment block, long offset, int i) {
        int low = i < 8 ? BlockFormat.u8(block, offset + i) & 0xF : BlockFormat.u8(block, offset + i - 8) >>> 4;
        int high = (BlockFormat.u8(block, offset + 8 + (i & 3)) >>> (2 * (i >>> 2))) & 3;
        return (low | (high << 4)) - 32;
    }

    /** Packs sixteen 6-bit unsigned Q3_K scale codes (signed scale + 32, each 0..63) at {@code offset}. */
    static void packQ3(int[] codes, MemorySegment block, long offset) {
        for (int k = 0; k < 8; k++) {
            block.set(Layouts.BYTE, offset + k, (byte) ((codes[k] & 0xF) | ((codes[k + 8] & 0xF) << 4)));
        }
        for (int k = 0; k < 4; k++) {
            int high = 0;
            for (int quarter = 0; quarter < 4; quarter++) {
                high |= (codes[k + 4 * quarter] >>> 4) << (2 * quarter);
            }
            block.set(Layouts.BYTE, offset + 8 + k, (byte) high);
        }
    }
}
