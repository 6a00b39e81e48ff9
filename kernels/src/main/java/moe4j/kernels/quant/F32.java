package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import jdk.incubator.vector.FloatVector;

import moe4j.gguf.GgmlType;

/** Plain little-endian float32. */
public final class F32 extends BlockFormat {

    static final F32 INSTANCE = new F32();

    private F32() { super(GgmlType.F32); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        MemorySegment.copy(src, Layouts.FLOAT_LE, srcOffset, dst, dstOffset, blocks);
    }

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
            FloatVector w = FloatVector.fromMemorySegment(Simd.F, src, srcOffset + 4L * i, Simd.LE);
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
            sum = Math.fma(src.get(Layouts.FLOAT_LE, srcOffset + 4L * i), x[xOffset + i], sum);
        }
        return sum;
    }

    @Override
    boolean hasRowKernel() { return true; }

    /**
     * The same loop at 8 lanes (AVX2), where a lone token otherwise took the generic path (decoded into an array, then
     * multiplied): JMH {@code matVecTwoThreads -p columns=4096} on the Zen 3 VM 20.8-24.0 -> 23.7-28.7 GB/s.
     */
    @Override
    boolean hasHalvesRowKernel() { return true; }

    /**
     * {@link #dotBlocks}' loop (same operations, same order) for each row in turn; prepared rows hold whole groups
     * of 16 ({@link PreparedActivations#SUM_GROUP}), so there is no scalar tail. Each group is already one 64-byte
     * load, and C2 unrolls this loop and drops its activation bounds checks (measured: unrolling it by hand into
     * four fixed accumulators was 15% slower); what a row kernel saves is the per-row calls and argument checks
     * of {@code dotPrepared}, which dominate short rows (128 elements: 2.5x), and the combine inlines here
     * (summing through an array and a scalar helper instead made the same rows 3x slower).
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
            for (int g = 0; g < groups; g++) {
                int i = g * Simd.L;
                FloatVector w = FloatVector.fromMemorySegment(Simd.F, src, row + 4L * i, Simd.LE);
                FloatVector n = w.fma(FloatVector.fromArray(Simd.F, xv, xRow + i), a0);
                a0 = a1;
                a1 = a2;
                a2 = a3;
                a3 = n;
            }
            // DecodedDot.combine's sums, written out: once a row (a 128th of the loop's trips for the routers' rows of
            // 2048) is too rare a call site for C2 to inline Simd.sum, whose vector argument was then boxed every row,
            // 144 KiB a token
            FloatVector v = switch (groups & 3) {
                case 0 -> a0.add(a1).add(a2.add(a3));
                case 1 -> a3.add(a0).add(a1.add(a2));
                case 2 -> a2.add(a3).add(a0.add(a1));
                default -> a1.add(a2).add(a3.add(a0));
            };
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
        MemorySegment.copy(src, srcOffset, dst, Layouts.FLOAT_LE, dstOffset, blocks);
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.FLOAT_LE, block, RandomWeights.next(rnd));
    }
}
