package moe4j.kernels.cuda;

import static moe4j.kernels.cuda.CudaDriver.check;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.JCudaDriver;

/** The CUDA devices of this machine, as {@code --device cuda:N} numbers them. */
public final class CudaDevices {

    /** The oldest compute capability the shipped PTX targets. */
    public static final int MIN_MAJOR = 8;

    private CudaDevices() {}

    /**
     * One device.
     *
     * @param index          the {@code N} of {@code cuda:N}
     * @param name           e.g. {@code NVIDIA H100 80GB HBM3}
     * @param major          compute capability, major
     * @param minor          compute capability, minor
     * @param multiprocessors streaming multiprocessors
     * @param totalMemory    device memory in bytes
     */
    public record Device(int index, String name, int major, int minor, int multiprocessors, long totalMemory) {

        public String computeCapability() { return major + "." + minor; }

        /** Whether moe4j's kernels run on it. */
        public boolean supported() { return major >= MIN_MAJOR; }
    }

    /**
     * Every CUDA device the driver reports.
     *
     * @throws CudaUnavailableException when there is no driver or no device
     */
    public static List<Device> list() {
        CudaDriver.init();
        int[] count = new int[1];
        check(JCudaDriver.cuDeviceGetCount(count), "cuDeviceGetCount");
        List<Device> devices = new ArrayList<>();
        for (int i = 0; i < count[0]; i++) {
            devices.add(describe(i));
        }
        return devices;
    }

    /** Why CUDA cannot be used on this machine, or empty when at least one device is there. */
    public static Optional<String> unavailableReason() {
        try {
            CudaDriver.init();
            return Optional.empty();
        } catch (CudaUnavailableException e) {
            return Optional.of(e.getMessage());
        }
    }

    /** The driver's CUDA version, e.g. {@code 13.0}. */
    public static String driverVersion() {
        CudaDriver.init();
        int[] v = new int[1];
        check(JCudaDriver.cuDriverGetVersion(v), "cuDriverGetVersion");
        return v[0] / 1000 + "." + (v[0] % 1000) / 10;
    }

    static Device describe(int index) {
        CUdevice device = new CUdevice();
        check(JCudaDriver.cuDeviceGet(device, index), "cuDeviceGet(" + index + ")");
        byte[] name = new byte[256];
        check(JCudaDriver.cuDeviceGetName(name, name.length, device), "cuDeviceGetName");
        int end = 0;
        while (end < name.length && name[end] != 0) {
            end++;
        }
        long[] memory = new long[1];
        check(JCudaDriver.cuDeviceTotalMem(memory, device), "cuDeviceTotalMem");
        return new Device(index, new String(name, 0, end, StandardCharsets.UTF_8).strip(),
                attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), memory[0]);
    }

    private static int attribute(CUdevice device, int attribute) {
        int[] v = new int[1];
        check(JCudaDriver.cuDeviceGetAttribute(v, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
        return v[0];
    }
}
