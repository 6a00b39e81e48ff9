package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/** Q4_K plus a fifth bit per element: {@code y = (d*sc)*(q4 + 16*h) - dmin*m}. */
public final class Q5_K extends BlockFormat {

    static final Q5_K INSTANCE = new Q5_K();

    private static final int QK = 256;
    private static final int BYTES = 176;
    private static final int D = 0;
    private static final int DMIN = 2;
    private static final int SCALES = 4;
    private static final int QH = 16;
    private static final int QS = 48;

    private Q5_K() { super(GgmlType.Q5_K, D, DMIN); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            float dmin = Halfs.readFp16(src, block + DMIN);
            for (int j = 0; j < 8; j++) {
                float dl = d * KQuantScales.scale(src, block + SCALES, j);
                float ml = dmin * KQuantScales.min(src, block + SCALES, j);
                int shift = 4 * (j & 1);
                long qs = block + QS + 32L * (j >>> 1);
                for (int l = 0; l < 32; l++) {
                    int q = ((u8(src, qs + l) >>> shift) & 0xF) + (((u8(src, block + QH + l) >>> j) & 1) << 4);
                    dst[out + 32 * j + l] = dl * q - ml;
                }
            }
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q5_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        KQuantizer q = new KQuantizer(31, -0.5f, 0.1f, 15);
        for (int b = 0; b < blocks; b++) {
            long block = dstOffset + (long) b * BYTES;
            int[] levels = q.quantizeSuperBlock(src, srcOffset + b * QK, dst, block + D, block + DMIN, block + SCALES);
            for (int l = 0; l < 32; l++) {
                int high = 0;
                for (int j = 0; j < 8; j++) {
                    high |= (levels[32 * j + l] >>> 4) << j;
                }
                dst.set(Layouts.BYTE, block + QH + l, (byte) high);
            }
            for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                    int packed = (levels[64 * c + l] & 0xF) | ((levels[64 * c + 32 + l] & 0xF) << 4);
                    dst.set(Layouts.BYTE, block + QS + 32L * c + l, (byte) packed);
                }
            }
        }
    }
}
