package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 4-bit quants (offset 8) times one fp16 scale: {@code y = (q - 8) * d}. */
public final class Q4_0 extends BlockFormat {

    static final Q4_0 INSTANCE = new Q4_0();

    private static final int QK = 32;
    private static final int BYTES = 18;

    private Q4_0() { super(GgmlType.Q4_0, 0); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 2 + j);
                dst[out + j] = ((q & 0xF) - 8) * d;
                dst[out + j + QK / 2] = ((q >>> 4) - 8) * d;
            }
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /**
     * ggml's quantize_row_q4_0_ref: the signed value of largest magnitude maps to level 0 (d = max/-8);
     * levels are truncations of {@code x/d + 8.5}, capped at 15.
     */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            int in = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float amax = 0;
            float max = 0;
            for (int j = 0; j < QK; j++) {
                float v = src[in + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            Halfs.writeFp16(dst, block, d);
            for (int j = 0; j < QK / 2; j++) {
                int lo = Math.min(15, (byte) (int) (src[in + j] * id + 8.5f));
                int hi = Math.min(15, (byte) (int) (src[in + j + QK / 2] * id + 8.5f));
                dst.set(Layouts.BYTE, block + 2 + j, (byte) (lo | (hi << 4)));
            }
        }
    }
}
