package moe4j.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class JitOptionsTest {

    private static List<String> missing(Map<String, String> values) {
        return JitOptions.missing(values::get);
    }

    @Test
    void hotSpotsDefaultsLackBothOptions() {
        assertEquals(JitOptions.RECOMMENDED,
                missing(Map.of("PerMethodTrapLimit", "100", "PerMethodRecompilationCutoff", "400")));
    }

    @Test
    void raisedLimitsLackNothing() {
        assertEquals(List.of(), missing(Map.of("PerMethodTrapLimit", "10000", "PerMethodRecompilationCutoff", "20000")));
    }

    @Test
    void anUnlimitedRecompilationCutoffIsEnoughButALowTrapLimitIsNot() {
        assertEquals(List.of("-XX:PerMethodTrapLimit=10000"),
                missing(Map.of("PerMethodTrapLimit", "5000", "PerMethodRecompilationCutoff", "-1")));
    }

    @Test
    void limitsThatCannotBeReadAreNotReported() {
        Map<String, String> values = new HashMap<>();
        values.put("PerMethodTrapLimit", "not a number");
        values.put("PerMethodRecompilationCutoff", null);
        assertEquals(List.of(), missing(values));
    }
}
