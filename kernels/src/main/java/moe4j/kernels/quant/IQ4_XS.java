package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of 4-bit indices into the IQ4_NL table; eight 32-element sub-blocks with
 * 6-bit signed scales (offset 32) times one fp16 super-scale.
 */
public final class IQ4_XS extends BlockFormat {

    static final IQ4_XS INSTANCE = new IQ4_XS();

    private static final int QK = 256;
    private static final int BYTES = 136;
    private static final int D = 0;
    private static final int SCALES_H = 2;
    private static final int SCALES_L = 4;
    private static final int QS = 8;

    private IQ4_XS() { super(GgmlType.IQ4_XS, D); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        byte[] levels = IQ4_NL.LEVELS;
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
            for (int ib = 0; ib < QK / 32; ib++) {
                int ls = ((u8(src, block + SCALES_L + ib / 2) >>> (4 * (ib % 2))) & 0xF)
                        | (((scalesH >>> (2 * ib)) & 3) << 4);
                float dl = d * (ls - 32);
                long qs = block + QS + 16L * ib;
                for (int j = 0; j < 16; j++) {
                    int q = u8(src, qs + j);
                    dst[out + 32 * ib + j] = dl * levels[q & 0xF];
                    dst[out + 32 * ib + 16 + j] = dl * levels[q >>> 4];
                }
            }
        }
    }

    /** Fused dot product: sub-block {@code ib} is groups {@code 2ib, 2ib+1}; see {@link Q4_K#dotBlocks}. */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int b = 0; b < count / QK; b++) {
            long block = srcOffset + (long) b * BYTES;
            float d = Halfs.readFp16(src, block + D);
            int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
            int scalesL = src.get(Layouts.INT_LE, block + SCALES_L);
            for (int ib = 0; ib < QK / 32; ib++) {
                int ls = ((scalesL >>> (4 * ib)) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
                float dl = d * (ls - 32);
                IntVector q = Simd.bytes(src, block + QS + 16L * ib);
                int e = xOffset + QK * b + 32 * ib;
                FloatVector n0 = Simd.toFloat(q.and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR)).mul(dl).fma(Simd.x(x, e), a0);
                FloatVector n1 = Simd.toFloat(Simd.high4(q).selectFrom(IQ4_NL.LEVEL_VECTOR)).mul(dl).fma(Simd.x(x, e + 16), a1);
                a0 = a2;
                a1 = a3;
                a2 = n0;
                a3 = n1;
            }
        }
        return DecodedDot.combine(a0, a1, a2, a3);
    }
}
