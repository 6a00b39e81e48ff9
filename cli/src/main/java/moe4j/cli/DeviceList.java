package moe4j.cli;

import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;

import moe4j.kernels.cuda.CudaDevices;
import moe4j.kernels.cuda.CudaUnavailableException;

/** {@code moe4j info --devices}: every device {@code --device} accepts, and why CUDA is missing where it is. */
final class DeviceList {

    private DeviceList() {}

    static void print(PrintWriter out) {
        out.printf(Locale.ROOT, "%-8s %s%n", "cpu", CpuDescription.line());
        List<CudaDevices.Device> gpus;
        try {
            gpus = CudaDevices.list();
        } catch (CudaUnavailableException e) {
            out.printf(Locale.ROOT, "%-8s %s%n", "cuda", e.getMessage());
            return;
        }
        String driver = CudaDevices.driverVersion();
        for (CudaDevices.Device d : gpus) {
            out.printf(Locale.ROOT, "%-8s %s, %s, compute %s, %d multiprocessors, driver CUDA %s%s%n", "cuda:" + d.index(),
                    d.name(), Sizes.bytes(d.totalMemory()), d.computeCapability(), d.multiprocessors(), driver,
                    d.supported() ? "" : " (not usable: moe4j needs compute " + CudaDevices.MIN_MAJOR + ".0 or newer)");
        }
    }
}
