package moe4j.kernels.quant;

import java.util.random.RandomGenerator;

/** Random values shaped like trained weights, for the unquantized types' random blocks. */
final class RandomWeights {

    private RandomWeights() {}

    /** Standard deviation typical of transformer weight matrices. */
    private static final double SIGMA = 0.05;

    static float next(RandomGenerator rnd) {
        return (float) (rnd.nextGaussian() * SIGMA);
    }
}
