package moe4j.kernels.quant;

import java.util.function.IntBinaryOperator;

import jdk.incubator.vector.FloatVector;

/**
 * An arrangement of each 256 activations that matches how a decoding kernel unpacks its quants, so that the
 * kernel reads activations straight through.
 *
 * <p>The kernels that use one load 64 quant bytes as sixteen 32-bit lanes and take byte {@code t} of every lane
 * with a single AND: one instruction per sixteen quants instead of a load, a widening and a shift. The quant
 * then sits in its lane multiplied by {@code 2^(8t)}, and lane {@code i} holds a weight from wherever the
 * format's packing put byte {@code 4i + t}. Activations stored in this order and scaled by {@code 2^(-8t)}
 * cancel both: each product is the natural-order product (powers of two are exact), only the order of the
 * float32 sums differs. The arrangement is made once per activation row and read by every row of the matrix.
 *
 * <p>Position {@code 16v + i} of a block (vector {@code v}, lane {@code i}) holds activation
 * {@code element(v, i)} of the block times {@code 2^(-8 (v mod 4))}: vector {@code v} takes byte {@code v mod 4}.
 */
public final class LaneOrder {

    /** Block length the orders apply to (the K-quant super-block). */
    public static final int BLOCK = 256;

    /** Activations as they are: no copy, no kernel that needs one. */
    public static final LaneOrder NATURAL = new LaneOrder("natural", null, null);

    private static final int LANES = 16;

    private final String name;
    private final int[] source;
    private final float[] factor;

    private LaneOrder(String name, int[] source, float[] factor) {
        this.name = name;
        this.source = source;
        this.factor = factor;
    }

    /**
     * The order whose vector {@code v}, lane {@code i} is block element {@code element.applyAsInt(v, i)}, for
     * {@code v, i} in {@code 0..15}; must be a permutation of the block.
     */
    static LaneOrder byteLanes(String name, IntBinaryOperator element) {
        int[] source = new int[BLOCK];
        float[] factor = new float[BLOCK];
        boolean[] seen = new boolean[BLOCK];
        for (int v = 0; v < BLOCK / LANES; v++) {
            for (int i = 0; i < LANES; i++) {
                int e = element.applyAsInt(v, i);
                if (e < 0 || e >= BLOCK || seen[e]) {
                    throw new IllegalArgumentException(name + " is not a permutation: element " + e + " at vector " + v
                            + " lane " + i);
                }
                seen[e] = true;
                source[LANES * v + i] = e;
                factor[LANES * v + i] = Math.scalb(1f, -8 * (v % 4));
            }
        }
        return new LaneOrder(name, source, factor);
    }

    /** Whether this order differs from the natural one (and so needs its own copy of the activations). */
    public boolean rearranges() { return source != null; }

    /** Writes {@code src[srcOffset .. srcOffset + count)} in this order to {@code dst[dstOffset ..]}. */
    void arrange(float[] src, int srcOffset, float[] dst, int dstOffset, int count) {
        if (source == null) {
            System.arraycopy(src, srcOffset, dst, dstOffset, count);
            return;
        }
        if (count % BLOCK != 0) {
            throw new IllegalArgumentException(count + " activations are not whole blocks of " + BLOCK + " for " + name);
        }
        for (int b = 0; b < count; b += BLOCK) {
            if (Simd.FUSED) {
                for (int p = 0; p < BLOCK; p += LANES) {
                    FloatVector.fromArray(Simd.F, src, srcOffset + b, source, p)
                            .mul(FloatVector.fromArray(Simd.F, factor, p))
                            .intoArray(dst, dstOffset + b + p);
                }
                continue;
            }
            for (int p = 0; p < BLOCK; p++) {
                dst[dstOffset + b + p] = src[srcOffset + b + source[p]] * factor[p];
            }
        }
    }

    @Override
    public String toString() { return name; }
}
