package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 int8 quants times one fp16 scale: {@code y = q * d}. */
public final class Q8_0 extends BlockFormat {

    static final Q8_0 INSTANCE = new Q8_0();

    private static final int QK = 32;
    private static final int BYTES = 34;

    private Q8_0() { super(GgmlType.Q8_0, 0); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            for (int j = 0; j < QK; j++) {
                dst[out + j] = i8(src, block + 2 + j) * d;
            }
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q8_0_ref: d = amax/127, quants rounded half away from zero with the unrounded 1/d. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            int in = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float amax = 0;
            for (int j = 0; j < QK; j++) {
                amax = Math.max(amax, Math.abs(src[in + j]));
            }
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            Halfs.writeFp16(dst, block, d);
            for (int j = 0; j < QK; j++) {
                dst.set(Layouts.BYTE, block + 2 + j, (byte) (int) QuantMath.roundHalfAway(src[in + j] * id));
            }
        }
    }
}
