package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 unsigned 5-bit quants with fp16 scale and min: {@code y = q * d + m}. */
public final class Q5_1 extends BlockFormat {

    static final Q5_1 INSTANCE = new Q5_1();

    private static final int QK = 32;
    private static final int BYTES = 24;

    private Q5_1() { super(GgmlType.Q5_1, 0, 2); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            float m = Halfs.readFp16(src, block + 2);
            int qh = src.get(Layouts.INT_LE, block + 4);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 8 + j);
                int lo = (q & 0xF) | (((qh >>> j) & 1) << 4);
                int hi = (q >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
                dst[out + j] = lo * d + m;
                dst[out + j + QK / 2] = hi * d + m;
            }
        }
    }
}
