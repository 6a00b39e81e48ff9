package moe4j.engine.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class HardwareTest {

    @Test
    void sizesUseBinaryUnits() {
        assertEquals(24L << 30, ByteSize.parse("24G"));
        assertEquals(24L << 30, ByteSize.parse("24GiB"));
        assertEquals(24L << 30, ByteSize.parse("24gb"));
        assertEquals(512L << 20, ByteSize.parse("512M"));
        assertEquals(3L << 39, ByteSize.parse("1.5T"));
        assertEquals(100, ByteSize.parse("100B"));
        assertEquals("24.00 GiB", ByteSize.format(24L << 30));
        assertEquals("512 B", ByteSize.format(512));
    }

    @ParameterizedTest
    @ValueSource(strings = {"24", "", "G", "24X", "-1G", "0G", "24iB", "abc", "1.G"})
    void badSizesAreRefusedNamingTheText(String text) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ByteSize.parse(text));
        assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
    }

    @Test
    void gpuListsTakeCardsSizesAndRepeats() {
        List<DeviceSpec> gpus = DeviceSpec.parseGpus("2xrtx3090, rtx4090:20G, 32G", 500, HostLink.PCIE3_X16);
        assertEquals(4, gpus.size());
        assertEquals(List.of("cuda:0", "cuda:1", "cuda:2", "cuda:3"), gpus.stream().map(DeviceSpec::name).toList());
        assertEquals("RTX 3090", gpus.get(1).hardware());
        assertEquals(24L << 30, gpus.get(1).capacityBytes());
        assertEquals(936, gpus.get(1).memoryGBps());
        assertEquals(HostLink.PCIE4_X16, gpus.get(1).link());
        assertEquals(20L << 30, gpus.get(2).capacityBytes());
        assertEquals(1008, gpus.get(2).memoryGBps());
        assertEquals(32L << 30, gpus.get(3).capacityBytes());
        assertEquals(500, gpus.get(3).memoryGBps());
        assertEquals(HostLink.PCIE3_X16, gpus.get(3).link());
        assertEquals(GpuCard.H100, GpuCard.find("H100"));
        assertEquals(GpuCard.RTX_3090_TI, GpuCard.find("RTX-3090-Ti"));

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DeviceSpec.parseGpus("rtx9999", 500, HostLink.PCIE4_X16));
        assertTrue(e.getMessage().contains("rtx9999") && e.getMessage().contains("rtx4090"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> DeviceSpec.parseGpus("24G,,24G", 500, HostLink.PCIE4_X16));
        assertThrows(IllegalArgumentException.class, () -> DeviceSpec.parseGpus("0x24G", 500, HostLink.PCIE4_X16));
    }

    @Test
    void ramBandwidthIsTransfersTimesEightBytesPerChannel() {
        assertEquals(89.6, SystemMemory.DEFAULT.bandwidthGBps(), 1e-9);
        assertEquals(51.2, SystemMemory.parse("DDR4-3200", 2).bandwidthGBps(), 1e-9);
        assertEquals(460.8, SystemMemory.parse("ddr5-4800", 12).bandwidthGBps(), 1e-9);
        assertThrows(IllegalArgumentException.class, () -> SystemMemory.parse("lpddr", 2));
        assertThrows(IllegalArgumentException.class, () -> SystemMemory.parse("ddr5-5600", 0));
        assertEquals(HostLink.PCIE5_X16, HostLink.parse("PCIe5"));
        assertThrows(IllegalArgumentException.class, () -> HostLink.parse("nvlink"));
    }
}
