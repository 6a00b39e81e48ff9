package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.Optional;

/**
 * For tests tagged {@value #TAG}: they run where a CUDA device is usable and skip with a visible message
 * elsewhere, so the CPU-only suite stays green. {@code mvn test -Dgroups=gpu} runs only them.
 */
public final class GpuTests {

    public static final String TAG = "gpu";

    private GpuTests() {}

    /** Skips the calling test (JUnit assumption) when CUDA cannot be used here, saying why. */
    public static void assumeCuda() {
        Optional<String> reason = CudaDevices.unavailableReason();
        assumeTrue(reason.isEmpty(), () -> "GPU test skipped: " + reason.orElse(""));
    }
}
