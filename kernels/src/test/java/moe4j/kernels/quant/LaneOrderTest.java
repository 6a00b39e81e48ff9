package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;

class LaneOrderTest {

    static Stream<GgmlType> laneOrderedTypes() {
        return Stream.of(GgmlType.values())
                .filter(t -> QuantFormats.isSupported(t) && QuantFormats.of(t).laneOrder().rearranges());
    }

    @Test
    void theKQuantsQ4_0AndIQ4_XSDecodeInPairsOfCodesAndQ8_0With256BitVectors() {
        Stream<GgmlType> q8 = Simd.HALVES ? Stream.of(GgmlType.Q8_0) : Stream.of();
        assertEquals(Stream.concat(Stream.concat(Stream.of(GgmlType.Q4_0), q8), Stream.of(GgmlType.Q2_K, GgmlType.Q3_K,
                GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS)).toList(), laneOrderedTypes().toList());
        assertFalse(LaneOrder.NATURAL.rearranges());
        assertTrue(IQ4_XS.SHORTS.packsShorts());
        assertTrue(Q8_0.SHORTS.packsShorts());
        assertFalse(Q4_K.PAIRS.packsShorts());
        // the orders that 256-bit row kernels read: the codes in natural order, 16-bit fields
        assertTrue(Q8_0.SHORTS.readByHalves());
        assertTrue(IQ4_XS.NATURAL_SHORTS.readByHalves());
        assertTrue(IQ4_XS.NATURAL_SHORTS.packsShorts());
        assertFalse(IQ4_XS.SHORTS.readByHalves());
        assertFalse(Q4_K.PAIRS.readByHalves());
    }

    @ParameterizedTest
    @MethodSource("laneOrderedTypes")
    void eachOrderPairsTheCodesOfItsTypesRounding(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        assertEquals(format.activationRounding(), format.laneOrder().rounding());
    }

    /** The code in the lower 16 bits of a packed pair, and the one above it (summed with it, or beside it in 16 bits). */
    private static int low(int pair) { return (short) pair; }

    private static int high(int pair) { return (pair - low(pair)) >> 16; }

    private static int high(LaneOrder order, int pair) { return order.packsShorts() ? pair >> 16 : high(pair); }

    @ParameterizedTest
    @MethodSource("laneOrderedTypes")
    void eachBlockPacksEveryCodeOnce(GgmlType type) {
        LaneOrder order = QuantFormats.of(type).laneOrder();
        int width = 3 * LaneOrder.BLOCK;
        int[] codes = new int[width];
        for (int i = 0; i < width; i++) {
            codes[i] = i % LaneOrder.BLOCK - 128; // -128..127: the element, as a signed code
        }
        int[] pairs = new int[width / 2 + 5];
        order.pack(codes, 0, pairs, 5, width);
        for (int b = 0; b < width / 2; b += LaneOrder.PAIRS) {
            boolean[] seen = new boolean[LaneOrder.BLOCK];
            for (int p = 0; p < LaneOrder.PAIRS; p++) {
                for (int element : new int[] {low(pairs[5 + b + p]) + 128, high(order, pairs[5 + b + p]) + 128}) {
                    assertTrue(element >= 0 && element < LaneOrder.BLOCK, type + " int " + p + " holds " + element);
                    assertFalse(seen[element], type + " element " + element + " twice");
                    seen[element] = true;
                }
            }
        }
    }

    /** One block of codes {@code element - 128}, packed in {@code order}. */
    private static int[] packedElements(LaneOrder order) {
        int[] codes = new int[LaneOrder.BLOCK];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = i - 128;
        }
        int[] pairs = new int[LaneOrder.PAIRS];
        order.pack(codes, 0, pairs, 0, codes.length);
        return pairs;
    }

    @Test
    void q4kPairsFollowTheNibblePacking() {
        int[] pairs = packedElements(Q4_K.PAIRS);
        // vector 5 = 4*1 + 1: the second 64 quant bytes shifted right by 4, high nibbles of bytes 0 and 2. Lane 9 holds
        // quant bytes 64 + 36 .. 64 + 39, in the last 32-byte chunk (elements 192..255), whose high nibbles are elements
        // 224..255: byte 100 is element 224 + 4 = 228 (multiplied by the lane's lower half, so its code goes above),
        // byte 102 is element 230
        assertEquals(228, high(pairs[16 * 5 + 9]) + 128);
        assertEquals(230, low(pairs[16 * 5 + 9]) + 128);
    }

    @Test
    void q4_0PairsFollowTheNibblePacking() {
        int[] pairs = packedElements(Q4_0.PAIRS);
        // vector 7 = 4*1 + 3: the second group of four blocks (elements 128..255) shifted right by 12, high nibbles of
        // bytes 1 and 3. Lane 9 holds quant bytes 4 .. 7 of the group's block 2 (elements 192..223), whose high nibbles
        // are elements 208..223: byte 5 is element 208 + 5 = 213 (multiplied by the lane's lower half, so its code goes
        // above), byte 7 is element 215
        assertEquals(213, high(pairs[16 * 7 + 9]) + 128);
        assertEquals(215, low(pairs[16 * 7 + 9]) + 128);
    }

    @Test
    void iq4xsShortsFollowTheNibblePacking() {
        int[] pairs = packedElements(IQ4_XS.SHORTS);
        // vector 6 = 4*1 + 2: the second 64 quant bytes (sub-blocks 4..7) as shorts shifted right by 8, low nibbles of
        // the odd bytes. Int lane 9 is short lanes 18 and 19, bytes 37 and 39: byte 5 and byte 7 of sub-block 6, whose
        // low nibbles are elements 192 + 5 and 192 + 7, side by side in 16 bits
        assertEquals(197, low(pairs[16 * 6 + 9]) + 128);
        assertEquals(199, (pairs[16 * 6 + 9] >> 16) + 128);
    }

    /**
     * The arithmetic the integer kernels rely on, at the extremes they allow: the quants of two lanes' bytes in their
     * halves times crosswise code pairs, two such products summed, give the two dot products' sum in the upper half
     * once {@code 2^15} is added, whatever the signs.
     */
    @Test
    void theUpperHalfOfTwoPairProductsIsTheirDotProduct() {
        SplittableRandom rnd = new SplittableRandom(7);
        int[] extremes = {-127, 127, 0, -1, 1};
        for (int trial = 0; trial < 100_000; trial++) {
            int exact = 0;
            int sum = 0;
            for (int product = 0; product < 2; product++) {
                int qLow = trial < 1000 ? 63 : rnd.nextInt(64); // Q6_K's 6 bits, the widest quants that pair up
                int qHigh = trial < 1000 ? 63 : rnd.nextInt(64);
                int aLow = trial < 1000 ? extremes[(trial + product) % 5] : rnd.nextInt(-127, 128);
                int aHigh = trial < 1000 ? extremes[(trial / 5 + product) % 5] : rnd.nextInt(-127, 128);
                sum += (qLow + 65536 * qHigh) * (aHigh + 65536 * aLow);
                exact += qLow * aLow + qHigh * aHigh;
            }
            assertEquals(exact, (sum + (1 << 15)) >> 16, "trial " + trial);
        }
    }

    @Test
    void anOrderThatIsNotAPermutationIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> LaneOrder.codePairs("broken", ActivationRounding.Q8_K, (v, i, high) -> i));
        assertTrue(e.getMessage().contains("broken is not a permutation"), e.getMessage());
    }
}
