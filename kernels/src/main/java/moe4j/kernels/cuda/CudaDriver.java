package moe4j.kernels.cuda;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Loads the CUDA driver through JCuda once per process and turns its result codes into exceptions.
 * Nothing here touches a device; a machine without a driver gets a {@link CudaUnavailableException}
 * with the reason instead of a linkage error.
 */
final class CudaDriver {

    private static String failure;
    private static boolean ready;

    private CudaDriver() {}

    /** Initializes the driver API, or throws why CUDA cannot be used on this machine. */
    static synchronized void init() {
        if (ready) {
            return;
        }
        if (failure == null) {
            failure = tryInit();
            ready = failure == null;
        }
        if (!ready) {
            throw new CudaUnavailableException(failure);
        }
    }

    private static String tryInit() {
        int result;
        try {
            JCudaDriver.setExceptionsEnabled(false);
            result = JCudaDriver.cuInit(0);
        } catch (LinkageError e) {
            // JCuda's native library needs libcuda.so.1, which only an NVIDIA driver installs
            return "CUDA is not available: the NVIDIA driver library (libcuda) could not be loaded ("
                    + firstLine(e.getMessage()) + ")";
        }
        if (result == CUresult.CUDA_ERROR_NO_DEVICE) {
            return "CUDA is not available: the driver found no CUDA device";
        }
        if (result == CUresult.CUDA_ERROR_SYSTEM_DRIVER_MISMATCH) {
            return "CUDA is not available: the NVIDIA driver and its kernel module do not match (reboot or reinstall the driver)";
        }
        if (result != CUresult.CUDA_SUCCESS) {
            return "CUDA is not available: cuInit failed with " + CUresult.stringFor(result);
        }
        int[] count = new int[1];
        result = JCudaDriver.cuDeviceGetCount(count);
        if (result != CUresult.CUDA_SUCCESS) {
            return "CUDA is not available: cuDeviceGetCount failed with " + CUresult.stringFor(result);
        }
        if (count[0] == 0) {
            return "CUDA is not available: the driver found no CUDA device";
        }
        return null;
    }

    private static String firstLine(String message) {
        if (message == null || message.isBlank()) {
            return "no details";
        }
        String line = message.strip().lines().findFirst().orElse("");
        return line.length() > 200 ? line.substring(0, 200) + "..." : line;
    }

    /** Throws a {@link CudaException} naming {@code what} unless {@code result} is success. */
    static void check(int result, String what) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException(what + " failed: " + CUresult.stringFor(result));
        }
    }
}
