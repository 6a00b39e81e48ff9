package moe4j.kernels.quant;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Constants for folding the lane sums of several vectors into one vector at once: for {@code h} = 8, 4, 2, 1,
 * {@code a.add(a.rearrange(ROTATE_h)).blend(b.rearrange(ROTATE_h).add(b), UPPER_h)} adds the lanes {@code h} apart
 * within each {@code 2h}-lane segment of {@code a} and of {@code b} and keeps {@code a}'s sums in the lower halves,
 * {@code b}'s in the upper. Each step halves the number of vectors; a vector's sum comes out in the pairwise order of
 * a lane fold. Constants because a shuffle read from an array is not intrinsified (the Java fallback runs).
 */
public final class LaneFolds {

    private LaneFolds() {}

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    public static final VectorShuffle<Float> ROTATE_8 = rotate(8);
    public static final VectorShuffle<Float> ROTATE_4 = rotate(4);
    public static final VectorShuffle<Float> ROTATE_2 = rotate(2);
    public static final VectorShuffle<Float> ROTATE_1 = rotate(1);
    public static final VectorMask<Float> UPPER_8 = upper(8);
    public static final VectorMask<Float> UPPER_4 = upper(4);
    public static final VectorMask<Float> UPPER_2 = upper(2);
    public static final VectorMask<Float> UPPER_1 = upper(1);

    /** Rotation by {@code h} lanes within each aligned {@code 2h}-lane segment (identity where the vector is narrower). */
    private static VectorShuffle<Float> rotate(int h) {
        return VectorShuffle.fromOp(F, lane -> h >= F.length() ? lane : (lane & -2 * h) | ((lane + h) & (2 * h - 1)));
    }

    /** The upper {@code h} lanes of each aligned {@code 2h}-lane segment. */
    private static VectorMask<Float> upper(int h) {
        boolean[] bits = new boolean[F.length()];
        for (int lane = 0; lane < bits.length; lane++) {
            bits[lane] = (lane & h) != 0;
        }
        return VectorMask.fromArray(F, bits, 0);
    }
}
