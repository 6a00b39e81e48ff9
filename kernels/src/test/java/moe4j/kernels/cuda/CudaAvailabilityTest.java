package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Optional;

import org.junit.jupiter.api.Test;

/**
 * Runs everywhere: without a driver or GPU, asking for CUDA gives one clear line instead of a linkage
 * error; with one, the devices are listed and a backend opens.
 */
class CudaAvailabilityTest {

    @Test
    void cudaIsEitherUsableOrExplainedInOneLine() {
        Optional<String> reason = CudaDevices.unavailableReason();
        if (reason.isPresent()) {
            String message = reason.get();
            assertTrue(message.startsWith("CUDA is not available: "), message);
            assertFalse(message.contains("\n"), "one line: " + message);
            CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> CudaBackend.open(0));
            assertEquals(message, e.getMessage());
            assertThrows(CudaUnavailableException.class, CudaDevices::list);
        } else {
            List<CudaDevices.Device> devices = CudaDevices.list();
            assertFalse(devices.isEmpty());
            assertEquals(0, devices.getFirst().index());
            assertTrue(devices.getFirst().totalMemory() > 0);
            try (CudaBackend b = CudaBackend.open(0)) {
                assertTrue(b.description().startsWith("cuda:0 ("), b.description());
            }
            CudaUnavailableException e = assertThrows(CudaUnavailableException.class,
                    () -> CudaBackend.open(devices.size()));
            assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        }
    }
}
