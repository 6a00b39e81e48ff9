package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

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

    /**
     * Fused dot product. Each 32 quant bytes hold two sub-blocks (low nibbles sub-block {@code 2c}, high
     * nibbles {@code 2c+1}); sub-block {@code j} is element groups {@code 2j, 2j+1}, so even sub-blocks feed
     * accumulators 0 and 1 and odd ones 2 and 3, and the loop swaps the pairs after each sub-block. The
     * loop body is one sub-block: a larger body exceeds what C2 inlines, and vector calls that are not inlined allocate.
     */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        float[] scaleMin = new float[16];
        for (int b = 0; b < count / QK; b++) {
            long block = srcOffset + (long) b * BYTES;
            int scales = src.get(Layouts.INT_LE, block + D);
            KQuantScales.scaleMinProducts(src, block, Simd.fp16(scales, 0), Simd.fp16(scales, 1), scaleMin);
            for (int j = 0; j < 8; j++) {
                FloatVector dl = FloatVector.broadcast(Simd.F, scaleMin[j]);
                FloatVector ml = FloatVector.broadcast(Simd.F, scaleMin[8 + j]);
                IntVector shift = IntVector.broadcast(Simd.I, 4 * (j & 1));
                long qs = block + QS + 32L * (j >>> 1);
                int e = xOffset + QK * b + 32 * j;
                FloatVector w0 = Simd.toFloat(Simd.bytes(src, qs).lanewise(VectorOperators.ASHR, shift).and(0xF));
                FloatVector w1 = Simd.toFloat(Simd.bytes(src, qs + 16).lanewise(VectorOperators.ASHR, shift).and(0xF));
                FloatVector n0 = w0.mul(dl).sub(ml).fma(Simd.x(x, e), a0);
                FloatVector n1 = w1.mul(dl).sub(ml).fma(Simd.x(x, e + 16), a1);
                a0 = a2;
                a1 = a3;
                a2 = n0;
                a3 = n1;
            }
        }
        return DecodedDot.combine(a0, a1, a2, a3);
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
