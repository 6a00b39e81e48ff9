package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertSame;

import org.junit.jupiter.api.Test;

import jcuda.driver.CUfunction;

/**
 * The down projection's four kernels are picked by depth and by where the rounded rows come from: the GPU tests
 * compare their results, which are the same bits by design and so cannot tell which of them ran.
 */
class CombineKernelsTest {

    @Test
    void eachFormOfTheDownProjectionTakesItsOwnKernel() {
        CUfunction four = new CUfunction();
        CUfunction two = new CUfunction();
        CUfunction roundedFour = new CUfunction();
        CUfunction roundedTwo = new CUfunction();
        Kernels.Combine combine = new Kernels.Combine(four, two, roundedFour, roundedTwo, new CUfunction());
        assertSame(four, combine.of(false, 4));
        assertSame(two, combine.of(false, 2));
        assertSame(roundedFour, combine.of(true, 4));
        assertSame(roundedTwo, combine.of(true, 2));
    }
}
