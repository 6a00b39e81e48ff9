package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector species and small building blocks shared by the fused dot kernels. Kernels work on groups of
 * {@link #L} elements (16 with AVX-512, 8 with AVX2); quant bytes are widened straight to int lanes
 * because x86 has no byte shifts, while int lanes shift and mask in one instruction.
 */
final class Simd {

    private Simd() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    /** Bytes with one lane per float lane (a quarter of the float vector's width). */
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, L * 8)));
    /** Shorts with one lane per float lane (half the float vector's width). */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(Math.max(64, L * 16)));

    /**
     * The fused kernels are written for 16 float lanes (AVX-512): a 16-element group is one vector and a
     * 32-element sub-block two. Other widths take the decode-then-dot path, which sums in the same order.
     */
    static final boolean FUSED = L == 16 && B.length() == L && S.length() == L;

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** Shuffles that fold the upper half of the active lanes onto the lower half, widest first. */
    private static final VectorShuffle<Float>[] FOLDS = folds();

    @SuppressWarnings("unchecked")
    private static VectorShuffle<Float>[] folds() {
        int steps = Integer.numberOfTrailingZeros(L);
        VectorShuffle<Float>[] folds = new VectorShuffle[steps];
        for (int s = 0, half = L / 2; half >= 1; s++, half /= 2) {
            int h = half;
            folds[s] = VectorShuffle.fromOp(F, lane -> (lane + h) % L);
        }
        return folds;
    }

    /**
     * The sum of all lanes in a fixed pairwise order. {@code reduceLanes(ADD)} leaves the order open
     * and its interpreted and compiled forms differ, which would make results depend on JIT warm-up.
     */
    static float sum(FloatVector v) {
        for (VectorShuffle<Float> fold : FOLDS) {
            v = v.add(v.rearrange(fold));
        }
        return v.lane(0);
    }

    /** {@link #L} bytes at {@code offset}, sign-extended to int lanes. */
    static IntVector bytes(MemorySegment src, long offset) {
        return (IntVector) ByteVector.fromMemorySegment(B, src, offset, LE).convertShape(VectorOperators.B2I, I, 0);
    }

    /** {@link #L} little-endian 16-bit values at {@code offset}, zero-extended to int lanes. */
    static IntVector shorts(MemorySegment src, long offset) {
        return ((IntVector) ShortVector.fromMemorySegment(S, src, offset, LE).convertShape(VectorOperators.S2I, I, 0))
                .and(0xFFFF);
    }

    /** Shift counts as vectors: shifting by a scalar goes through a path too large for C2 to inline in big kernels. */
    static final IntVector SHIFT_2 = IntVector.broadcast(I, 2);
    static final IntVector SHIFT_4 = IntVector.broadcast(I, 4);
    static final IntVector SHIFT_6 = IntVector.broadcast(I, 6);

    /** The high nibble of sign-extended byte lanes. */
    static IntVector high4(IntVector bytes) {
        return bytes.lanewise(VectorOperators.ASHR, SHIFT_4).and(0xF);
    }

    /** fp16 value of the low (0) or high (1) half of a little-endian int holding two fp16 fields. */
    static float fp16(int pair, int half) {
        return Float.float16ToFloat((short) (pair >>> (16 * half)));
    }

    static FloatVector floats(MemorySegment src, long offset) {
        return FloatVector.fromMemorySegment(F, src, offset, LE);
    }

    static FloatVector toFloat(IntVector v) {
        return (FloatVector) v.convert(VectorOperators.I2F, 0);
    }

    static FloatVector x(float[] x, int offset) {
        return FloatVector.fromArray(F, x, offset);
    }
}
