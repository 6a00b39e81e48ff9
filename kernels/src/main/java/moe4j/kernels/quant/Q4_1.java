package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 unsigned 4-bit quants with fp16 scale and min: {@code y = q * d + m}. */
public final class Q4_1 extends BlockFormat {

    static final Q4_1 INSTANCE = new Q4_1();

    private static final int QK = 32;
    private static final int BYTES = 20;

    private Q4_1() { super(GgmlType.Q4_1, 0, 2); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            float m = Halfs.readFp16(src, block + 2);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 4 + j);
                dst[out + j] = (q & 0xF) * d + m;
                dst[out + j + QK / 2] = (q >>> 4) * d + m;
            }
        }
    }
}
