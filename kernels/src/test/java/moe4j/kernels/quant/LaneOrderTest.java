package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
    void theKQuantsDecodeInLaneOrder() {
        assertEquals(Stream.of(GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K).toList(),
                laneOrderedTypes().toList());
        assertFalse(LaneOrder.NATURAL.rearranges());
    }

    @ParameterizedTest
    @MethodSource("laneOrderedTypes")
    void eachBlockIsAPermutationScaledByTheBytePower(GgmlType type) {
        LaneOrder order = QuantFormats.of(type).laneOrder();
        int width = 3 * LaneOrder.BLOCK;
        float[] x = new float[width];
        for (int i = 0; i < width; i++) {
            x[i] = i + 1;
        }
        float[] lanes = new float[width + 5];
        order.arrange(x, 0, lanes, 5, width);
        for (int b = 0; b < width; b += LaneOrder.BLOCK) {
            boolean[] seen = new boolean[LaneOrder.BLOCK];
            for (int p = 0; p < LaneOrder.BLOCK; p++) {
                // vector p/16 takes byte (p/16) mod 4 of its lanes: undo its power of two
                float element = Math.scalb(lanes[5 + b + p], 8 * ((p / 16) % 4)) - 1 - b;
                assertTrue(element >= 0 && element < LaneOrder.BLOCK && element == Math.rint(element),
                        type + " position " + p + " holds " + element);
                assertFalse(seen[(int) element], type + " element " + element + " twice");
                seen[(int) element] = true;
            }
        }
    }

    @Test
    void q4kLanesFollowTheNibblePacking() {
        float[] x = new float[LaneOrder.BLOCK];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        float[] lanes = new float[LaneOrder.BLOCK];
        Q4_K.LANES.arrange(x, 0, lanes, 0, x.length);
        // vector 5 = 8*0 + 4*high + 1: byte 1 of each lane, high nibbles; lane 9 = quant byte 4*9 + 1 = 37, in the
        // second 32-byte chunk (elements 64..127), whose high nibbles are elements 96..127: 96 + 37 - 32 = 101
        assertEquals(101f, Math.scalb(lanes[16 * 5 + 9], 8));
    }

    @Test
    void anOrderThatIsNotAPermutationIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> LaneOrder.byteLanes("broken", (v, i) -> i));
        assertTrue(e.getMessage().contains("broken is not a permutation"), e.getMessage());
    }
}
