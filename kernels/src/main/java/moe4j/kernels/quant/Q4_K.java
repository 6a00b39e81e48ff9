package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of unsigned 4-bit quants in eight 32-element sub-blocks, each with a 6-bit
 * scale and 6-bit min multiplied by the fp16 super-scales: {@code y = (d*sc)*q - dmin*m}.
 */
public final class Q4_K extends BlockFormat {

    static final Q4_K INSTANCE = new Q4_K();

    private static final int QK = 256;
    private static final int BYTES = 144;
    private static final int D = 0;
    private static final int DMIN = 2;
    private static final int SCALES = 4;
    private static final int QS = 16;

    private Q4_K() { super(GgmlType.Q4_K, D, DMIN); }

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
                    dst[out + 32 * j + l] = dl * ((u8(src, qs + l) >>> shift) & 0xF) - ml;
                }
            }
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q4_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        KQuantizer q = new KQuantizer(15, -1.f, 0.1f, 20);
        for (int b = 0; b < blocks; b++) {
            long block = dstOffset + (long) b * BYTES;
            int[] levels = q.quantizeSuperBlock(src, srcOffset + b * QK, dst, block + D, block + DMIN, block + SCALES);
            for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                    int packed = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
                    dst.set(Layouts.BYTE, block + QS + 32L * c + l, (byte) packed);
                }
            }
        }
    }
}
