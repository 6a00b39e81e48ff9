package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

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

    /** Fused dot product, iterating like {@link Q6_K#dotBlocks}. */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        float[] scaleMin = new float[32];
        for (int b = 0; b < count / QK; b++) {
            long block = srcOffset + (long) b * BYTES;
            int dd = src.get(Layouts.INT_LE, block + D);
            IntVector sc = Simd.bytes(src, block + SCALES);
            Simd.toFloat(sc.and(0xF)).mul(Simd.fp16(dd, 0)).intoArray(scaleMin, 0);
            Simd.toFloat(Simd.high4(sc)).mul(Simd.fp16(dd, 1)).intoArray(scaleMin, 16);
            for (int hk = 0; hk < 8; hk++) {
                int half = hk >>> 2;
                int k = hk & 3;
                int g = 8 * half + 2 * k;
                IntVector shift = IntVector.broadcast(Simd.I, 2 * k);
                long qs = block + QS + 32L * half;
                FloatVector w0 = Simd.toFloat(Simd.bytes(src, qs).lanewise(VectorOperators.ASHR, shift).and(3));
                FloatVector w1 = Simd.toFloat(Simd.bytes(src, qs + 16).lanewise(VectorOperators.ASHR, shift).and(3));
                int e = xOffset + QK * b + 16 * g;
                FloatVector n0 = w0.mul(scaleMin[g]).sub(scaleMin[16 + g]).fma(Simd.x(x, e), a0);
                FloatVector n1 = w1.mul(scaleMin[g + 1]).sub(scaleMin[17 + g]).fma(Simd.x(x, e + 16), a1);
                a0 = a2;
                a1 = a3;
                a2 = n0;
                a3 = n1;
            }
        }
        return DecodedDot.combine(a0, a1, a2, a3);
    }
}
