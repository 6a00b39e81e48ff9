package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 5-bit quants (offset 16) times one fp16 scale; the fifth bits sit in a 32-bit mask. */
public final class Q5_0 extends BlockFormat {

    static final Q5_0 INSTANCE = new Q5_0();

    private static final int QK = 32;
    private static final int BYTES = 22;

    private Q5_0() { super(GgmlType.Q5_0, 0); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            int qh = src.get(Layouts.INT_LE, block + 2);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 6 + j);
                int lo = (q & 0xF) | (((qh >>> j) & 1) << 4);
                int hi = (q >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
                dst[out + j] = (lo - 16) * d;
                dst[out + j + QK / 2] = (hi - 16) * d;
            }
        }
    }
}
