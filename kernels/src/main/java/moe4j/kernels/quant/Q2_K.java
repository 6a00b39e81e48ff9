package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of 2-bit quants; each 16-element group has a 4-bit scale and 4-bit min
 * multiplied by the fp16 super-scales {@code d} and {@code dmin}.
 */
public final class Q2_K extends BlockFormat {

    static final Q2_K INSTANCE = new Q2_K();

    private static final int QK = 256;
    private static final int BYTES = 84;
    private static final int SCALES = 0;
    private static final int QS = 16;
    private static final int D = 80;
    private static final int DMIN = 82;

    private Q2_K() { super(GgmlType.Q2_K, D, DMIN); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            float dmin = Halfs.readFp16(src, block + DMIN);
            for (int g = 0; g < QK / 16; g++) {
                int sc = u8(src, block + SCALES + g);
                float dl = d * (sc & 0xF);
                float ml = dmin * (sc >>> 4);
                // group g covers elements 16g..16g+15: half h = g/8, shift pair k = (g/2)%4, bytes l0..l0+15
                int half = g >>> 3;
                int shift = 2 * ((g >>> 1) & 3);
                long qs = block + QS + 32L * half + 16L * (g & 1);
                for (int l = 0; l < 16; l++) {
                    int q = (u8(src, qs + l) >>> shift) & 3;
                    dst[out + 16 * g + l] = dl * q - ml;
                }
            }
        }
    }
}
