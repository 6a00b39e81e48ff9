package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.S2I;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/** bfloat16: the top half of a float32; rounded to nearest even on write. */
public final class BF16 extends BlockFormat {

    static final BF16 INSTANCE = new BF16();

    private BF16() { super(GgmlType.BF16); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        int i = 0;
        if (vectors && Simd.BYTE_LANES) {
            // a bfloat16 is a float's upper 16 bits: the same bits as the scalar loop
            for (int bound = blocks - Simd.L; i <= bound; i += Simd.L) {
                ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, srcOffset + 2L * i, Simd.LE)
                        .convertShape(S2I, Simd.I, 0)).lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                        .intoArray(dst, dstOffset + i);
            }
        }
        for (; i < blocks; i++) {
            dst[dstOffset + i] = Halfs.bf16ToFloat(src.get(Layouts.SHORT_LE, srcOffset + 2L * i));
        }
    }

    private static final IntVector SHIFT_16 = IntVector.broadcast(Simd.I, 16);

    /**
     * Fused dot product in the canonical order of {@link DecodedDot}: each group uses accumulator
     * {@code a0} and the four rotate, so after the loop they are put back in place by the group count.
     */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        int groups = count / Simd.L;
        for (int g = 0; g < groups; g++) {
            int i = g * Simd.L;
            IntVector h = (IntVector) ShortVector.fromMemorySegment(Simd.S, src, srcOffset + 2L * i, Simd.LE)
                    .convertShape(S2I, Simd.I, 0);
            FloatVector w = h.lanewise(LSHL, SHIFT_16).reinterpretAsFloats();
            FloatVector n = w.fma(FloatVector.fromArray(Simd.F, x, xOffset + i), a0);
            a0 = a1;
            a1 = a2;
            a2 = a3;
            a3 = n;
        }
        float sum = switch (groups & 3) {
            case 0 -> DecodedDot.combine(a0, a1, a2, a3);
            case 1 -> DecodedDot.combine(a3, a0, a1, a2);
            case 2 -> DecodedDot.combine(a2, a3, a0, a1);
            default -> DecodedDot.combine(a1, a2, a3, a0);
        };
        for (int i = groups * Simd.L; i < count; i++) {
            sum = Math.fma(Halfs.bf16ToFloat(src.get(Layouts.SHORT_LE, srcOffset + 2L * i)), x[xOffset + i], sum);
        }
        return sum;
    }

    /** Prompt batches decode each 256 values once for all their tokens ({@link ScaledDot}), widened exactly. */
    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        MemorySegment w = s.w;
        long e = s.at[slot];
        long gb = s.groupBytes;
        for (int g = 0; g < ScaledDot.QK / 16; g++) {
            IntVector h = (IntVector) ShortVector.fromMemorySegment(Simd.S, src, block + 32L * g, Simd.LE)
                    .convertShape(S2I, Simd.I, 0);
            h.lanewise(LSHL, SHIFT_16).reinterpretAsFloats().intoMemorySegment(w, e + g * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    /**
     * The same loop at 8 lanes (AVX2), where a lone token otherwise took the generic path: JMH {@code matVecTwoThreads
     * -p columns=4096} on the Zen 3 VM 14.5-17.1 -> 16.9-18.6 GB/s. F16's conversion, three vector operations more a
     * group, ran slower so in cache (14.3 -> 8.2 GB/s on one thread) and keeps that path.
     */
    @Override
    boolean hasHalvesRowKernel() { return true; }

    /** Groups of 16 per inner loop of {@link #dotRows}: see {@link Simd#HALF_FLOAT_SPAN}. */
    private static final int SPAN = Simd.HALF_FLOAT_SPAN / 16;

    /**
     * {@link #dotBlocks}' loop (same operations, same order) for each row in turn, cut into loops of {@link #SPAN}
     * groups for reading from memory ({@link Simd#HALF_FLOAT_SPAN}); prepared rows hold whole groups of 16, so there
     * is no scalar tail. As for {@link F32#dotRows}, the gain over {@link #dotBlocks} is the per-row calls and checks
     * and the inlined combine.
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        int width = x.width();
        int groups = width / Simd.L;
        float[] xv = x.values();
        int xRow = token * width;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            FloatVector a2 = a0;
            FloatVector a3 = a0;
            // group g into accumulator g % 4, four groups a pass (rotating the four through one a pass cost register
            // moves, as many instructions as the products); SPAN is a multiple of four
            for (int g0 = 0; g0 < groups; g0 += SPAN) {
                int gEnd = Math.min(groups, g0 + SPAN);
                int g = g0;
                for (; g + 4 <= gEnd; g += 4) {
                    int i = g * Simd.L;
                    long at = row + 2L * i;
                    a0 = ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, at, Simd.LE).convertShape(S2I, Simd.I, 0))
                            .lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                            .fma(FloatVector.fromArray(Simd.F, xv, xRow + i), a0);
                    a1 = ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, at + 2L * Simd.L, Simd.LE)
                            .convertShape(S2I, Simd.I, 0)).lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                            .fma(FloatVector.fromArray(Simd.F, xv, xRow + i + Simd.L), a1);
                    a2 = ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, at + 4L * Simd.L, Simd.LE)
                            .convertShape(S2I, Simd.I, 0)).lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                            .fma(FloatVector.fromArray(Simd.F, xv, xRow + i + 2 * Simd.L), a2);
                    a3 = ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, at + 6L * Simd.L, Simd.LE)
                            .convertShape(S2I, Simd.I, 0)).lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                            .fma(FloatVector.fromArray(Simd.F, xv, xRow + i + 3 * Simd.L), a3);
                }
                for (; g < gEnd; g++) {
                    int i = g * Simd.L;
                    FloatVector n = ((IntVector) ShortVector.fromMemorySegment(Simd.S, src, row + 2L * i, Simd.LE)
                            .convertShape(S2I, Simd.I, 0)).lanewise(LSHL, SHIFT_16).reinterpretAsFloats()
                            .fma(FloatVector.fromArray(Simd.F, xv, xRow + i), g % 4 == 0 ? a0 : g % 4 == 1 ? a1 : a2);
                    if (g % 4 == 0) {
                        a0 = n;
                    } else if (g % 4 == 1) {
                        a1 = n;
                    } else {
                        a2 = n;
                    }
                }
            }
            // DecodedDot.combine's sums written out, as in F32's row kernel: C2 leaves a call made once a row uninlined
            FloatVector v = a0.add(a1).add(a2.add(a3));
            // Simd.sum's folds at 16 or 8 lanes, the widths this kernel runs at (with 8 lanes too a call boxed its
            // argument, 64 B a row)
            if (Simd.L == 16) {
                v = v.add(v.rearrange(Simd.FOLD_8));
            }
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            out[outOffset + r] = v.add(v.rearrange(Simd.FOLD_1)).lane(0);
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int i = 0; i < blocks; i++) {
            dst.set(Layouts.SHORT_LE, dstOffset + 2L * i, Halfs.floatToBf16(src[srcOffset + i]));
        }
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.SHORT_LE, block, Halfs.floatToBf16(RandomWeights.next(rnd)));
    }
}
