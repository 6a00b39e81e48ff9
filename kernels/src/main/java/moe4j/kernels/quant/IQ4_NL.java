package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** 32 4-bit indices into a fixed non-linear table, times one fp16 scale. */
public final class IQ4_NL extends BlockFormat {

    static final IQ4_NL INSTANCE = new IQ4_NL();

    /** ggml's {@code kvalues_iq4nl}: the 16 levels shared by IQ4_NL and IQ4_XS. */
    static final byte[] LEVELS = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

    private static final int QK = 32;
    private static final int BYTES = 18;

    private IQ4_NL() { super(GgmlType.IQ4_NL, 0); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 2 + j);
                dst[out + j] = d * LEVELS[q & 0xF];
                dst[out + j + QK / 2] = d * LEVELS[q >>> 4];
            }
        }
    }
}
