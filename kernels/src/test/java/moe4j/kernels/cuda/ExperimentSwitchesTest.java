package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The CUDA backend's two-valued switches (such as {@code -Dmoe4j.cuda.routeWarps}) read strictly. */
class ExperimentSwitchesTest {

    private static final String NAME = "moe4j.test.eitherProperty";

    @AfterEach
    void clear() {
        System.clearProperty(NAME);
    }

    @Test
    void anUnsetSwitchTakesItsUsualValueAndASetOneEitherValue() {
        assertEquals(4, CudaBackend.eitherProperty(NAME, 4, 1));
        System.setProperty(NAME, " 1 ");
        assertEquals(1, CudaBackend.eitherProperty(NAME, 4, 1));
        System.setProperty(NAME, "4");
        assertEquals(4, CudaBackend.eitherProperty(NAME, 4, 1));
    }

    @Test
    void anyOtherValueIsAClearError() {
        System.setProperty(NAME, "3");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CudaBackend.eitherProperty(NAME, 4, 1));
        assertEquals("-D" + NAME + " must be 1 or 4, not '3'", e.getMessage());
    }
}
