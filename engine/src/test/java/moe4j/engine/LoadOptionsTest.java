package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

import moe4j.kernels.cuda.CudaDevices;
import moe4j.kernels.cuda.CudaUnavailableException;

class LoadOptionsTest {

    @Test
    void theDevicesArePlacementsListOrTheOneDevice() {
        assertEquals(List.of(Device.CPU), LoadOptions.defaults().devices());
        assertEquals(List.of(Device.cuda(1)), LoadOptions.defaults().withDevice(Device.cuda(1)).devices());
        List<Device> listed = List.of(Device.cuda(0), Device.CPU);
        assertEquals(listed, LoadOptions.defaults().withDevice(Device.cuda(1))
                .withPlacement(PlacementOptions.NONE.withDevices(listed)).devices());
    }

    @Test
    void theCpuIsAlwaysUsable() {
        assertDoesNotThrow(() -> LoadOptions.defaults().requireUsableDevices());
        assertDoesNotThrow(() -> LoadOptions.defaults()
                .withPlacement(PlacementOptions.NONE.withDevices(List.of(Device.CPU, Device.CPU)))
                .requireUsableDevices());
    }

    @Test
    void aGpuOnAMachineWithoutCudaFailsWithTheReason() {
        assumeTrue(CudaDevices.unavailableReason().isPresent(), "a usable GPU here: nothing to refuse");
        for (LoadOptions options : List.of(LoadOptions.defaults().withDevice(Device.cuda(0)),
                LoadOptions.defaults().withPlacement(PlacementOptions.NONE.withDevices(List.of(Device.cuda(0),
                        Device.CPU))))) {
            CudaUnavailableException e = assertThrows(CudaUnavailableException.class, options::requireUsableDevices);
            assertTrue(e.getMessage().startsWith("CUDA is not available"), e.getMessage());
        }
    }
}
