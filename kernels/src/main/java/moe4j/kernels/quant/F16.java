package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.GE;
import static jdk.incubator.vector.VectorOperators.GT;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.OR;
import static jdk.incubator.vector.VectorOperators.S2I;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/** IEEE binary16, converted exactly on read and rounded to nearest even on write. */
public final class F16 extends BlockFormat {

    static final F16 INSTANCE = new F16();

    private F16() { super(GgmlType.F16); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        int i = 0;
        if (vectors && Simd.FUSED) {
            // the dot kernels' conversion below, NaNs quieted as Float.float16ToFloat (vcvtph2ps) quiets them; used
            // for the KV cache, where a copy per row into a scratch array for C2's vectorized loop cost more
            for (int bound = blocks - Simd.L; i <= bound; i += Simd.L) {
                IntVector h = (IntVector) ShortVector.fromMemorySegment(Simd.S, src, srcOffset + 2L * i, Simd.LE)
                        .convertShape(S2I, Simd.I, 0);
                IntVector magnitude = h.and(MAGNITUDE);
                IntVector scaled = magnitude.lanewise(LSHL, SHIFT_13).reinterpretAsFloats().mul(REBIAS).reinterpretAsInts();
                IntVector bits = scaled.lanewise(OR, FLOAT_EXPONENT, magnitude.compare(GE, EXPONENT_ALL_ONES))
                        .lanewise(OR, QUIET, magnitude.compare(GT, EXPONENT_ALL_ONES));
                bits.or(h.and(SIGN)).reinterpretAsFloats().intoArray(dst, dstOffset + i);
            }
        }
        for (; i < blocks; i++) {
            dst[dstOffset + i] = Float.float16ToFloat(src.get(Layouts.SHORT_LE, srcOffset + 2L * i));
        }
    }

    // vector constants rather than scalar operands: C2 keeps these in registers, but re-broadcast scalar
    // operands from memory in every iteration of the row kernel's inner loop (measured 15% slower)
    private static final IntVector SHIFT_13 = IntVector.broadcast(Simd.I, 13);
    private static final IntVector EXPONENT_ALL_ONES = IntVector.broadcast(Simd.I, 0x7C00);
    private static final IntVector MAGNITUDE = IntVector.broadcast(Simd.I, 0x7FFF);
    private static final FloatVector REBIAS = FloatVector.broadcast(Simd.F, 0x1p112f);
    private static final IntVector FLOAT_EXPONENT = IntVector.broadcast(Simd.I, 0x7F800000);
    private static final IntVector SIGN = IntVector.broadcast(Simd.I, 0x80000000);
    private static final IntVector QUIET = IntVector.broadcast(Simd.I, 0x00400000);

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
            // exact binary16 -> float32: magnitude bits moved into float position and scaled by 2^112
            // rebias normal and subnormal values alike; infinities and NaNs come out with their mantissa but
            // a finite exponent, so setting the exponent field (a masked or) finishes them; the sign is bit 31
            // of the sign-extended lane already. Two vector operations fewer than shifting the sign and
            // blending the specials: measured 1.2x the throughput.
            IntVector h = (IntVector) ShortVector.fromMemorySegment(Simd.S, src, srcOffset + 2L * i, Simd.LE)
                    .convertShape(S2I, Simd.I, 0);
            IntVector magnitude = h.and(MAGNITUDE);
            IntVector scaled = magnitude.lanewise(LSHL, SHIFT_13).reinterpretAsFloats().mul(REBIAS).reinterpretAsInts();
            IntVector bits = scaled.lanewise(OR, FLOAT_EXPONENT, magnitude.compare(GE, EXPONENT_ALL_ONES));
            FloatVector w = bits.or(h.and(SIGN)).reinterpretAsFloats();
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
            sum = Math.fma(Halfs.readFp16(src, srcOffset + 2L * i), x[xOffset + i], sum);
        }
        return sum;
    }

    /**
     * Prompt batches decode each 256 values once for all their tokens ({@link ScaledDot}), converted as the row kernel
     * converts them.
     */
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
            IntVector magnitude = h.and(MAGNITUDE);
            IntVector scaled = magnitude.lanewise(LSHL, SHIFT_13).reinterpretAsFloats().mul(REBIAS).reinterpretAsInts();
            IntVector bits = scaled.lanewise(OR, FLOAT_EXPONENT, magnitude.compare(GE, EXPONENT_ALL_ONES));
            bits.or(h.and(SIGN)).reinterpretAsFloats().intoMemorySegment(w, e + g * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    /** Groups of 16 per inner loop of {@link #dotRows}: see {@link Simd#HALF_FLOAT_SPAN}. */
    private static final int SPAN = Simd.HALF_FLOAT_SPAN / 16;

    /**
     * {@link #dotBlocks}' loop (same conversion, same operations, same order) for each row in turn, cut into loops of
     * {@link #SPAN} groups for reading from memory ({@link Simd#HALF_FLOAT_SPAN}); prepared rows hold whole groups of
     * 16, so there is no scalar tail. In cache the loop is bound by the conversion's vector arithmetic; the gain over
     * {@link #dotBlocks} is the per-row calls and checks and the inlined combine, as in {@link F32#dotRows}.
     * Measured (JDK 25): a 64-byte load split into two groups with {@code convertShape(S2I, .., 1)} ran 5x slower,
     * and converting through a scratch array with {@code Float.float16ToFloat}, which C2 does vectorize to
     * vcvtph2ps, 1.5x slower for the extra copy and passes.
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
            for (int g0 = 0; g0 < groups; g0 += SPAN) {
                for (int g = g0, gEnd = Math.min(groups, g0 + SPAN); g < gEnd; g++) {
                    int i = g * Simd.L;
                    IntVector h = (IntVector) ShortVector.fromMemorySegment(Simd.S, src, row + 2L * i, Simd.LE)
                            .convertShape(S2I, Simd.I, 0);
                    IntVector magnitude = h.and(MAGNITUDE);
                    IntVector scaled = magnitude.lanewise(LSHL, SHIFT_13).reinterpretAsFloats().mul(REBIAS)
                            .reinterpretAsInts();
                    IntVector bits = scaled.lanewise(OR, FLOAT_EXPONENT, magnitude.compare(GE, EXPONENT_ALL_ONES));
                    FloatVector w = bits.or(h.and(SIGN)).reinterpretAsFloats();
                    FloatVector n = w.fma(FloatVector.fromArray(Simd.F, xv, xRow + i), a0);
                    a0 = a1;
                    a1 = a2;
                    a2 = a3;
                    a3 = n;
                }
            }
            // DecodedDot.combine's sums written out, as in F32's row kernel: C2 leaves a call made once a row uninlined
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
        for (int i = 0; i < blocks; i++) {
            dst.set(Layouts.SHORT_LE, dstOffset + 2L * i, Halfs.floatToFp16(src[srcOffset + i]));
        }
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.SHORT_LE, block, Halfs.floatToFp16(RandomWeights.next(rnd)));
    }
}
