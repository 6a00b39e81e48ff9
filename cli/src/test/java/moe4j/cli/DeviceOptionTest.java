package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Optional;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.kernels.cuda.CudaDevices;
import moe4j.kernels.quant.QuantFormats;

/** {@code info --devices} and {@code --device}, on any machine: with or without a GPU the answers are clear. */
class DeviceOptionTest {

    @Test
    void infoDevicesListsTheCpuAndEitherTheGpusOrWhyThereAreNone() {
        CliRunner r = CliRunner.run("info", "--devices");
        assertEquals(0, r.exitCode(), r.err());
        String[] lines = r.out().split("\\R");
        assertTrue(lines[0].startsWith("cpu "), r.out());
        assertTrue(lines[0].contains(Runtime.getRuntime().availableProcessors() + " threads, "
                + QuantFormats.vectorBits() + "-bit vectors"), r.out());
        if (CudaDevices.unavailableReason().isPresent()) {
            assertEquals(2, lines.length, r.out());
            assertTrue(lines[1].startsWith("cuda     CUDA is not available: "), r.out());
        } else {
            assertTrue(lines[1].startsWith("cuda:0   "), r.out());
        }
    }

    @Test
    void theSlowKernelsNoteAppearsExactlyWhereTheFusedKernelsDoNotRun() {
        Optional<String> note = CpuDescription.slowKernelsNote();
        assertEquals(QuantFormats.fusedKernels(), note.isEmpty());
        note.ifPresent(n -> assertTrue(n.contains(QuantFormats.vectorBits() + " bits wide"), n));
    }

    @Test
    void infoWithoutAModelOrDevicesIsAUsageError() {
        CliRunner r = CliRunner.run("info");
        assertEquals(2, r.exitCode());
        assertTrue(r.lastErrLine().contains("--model") && r.lastErrLine().contains("--devices"), r.err());
    }

    @Test
    void anUnknownDeviceIsAUsageError(@TempDir Path dir) throws IOException {
        Path model = TestModels.tinyMoe(dir);
        CliRunner r = CliRunner.run("logits", "-m", model.toString(), "--device", "tpu", "-p", "hi", "--out",
                dir.resolve("l.bin").toString());
        assertEquals(2, r.exitCode(), r.err());
        assertTrue(r.lastErrLine().contains("unknown device 'tpu'"), r.err());
    }

    @Test
    void askingForCudaWithoutAGpuFailsWithOneLine(@TempDir Path dir) throws IOException {
        assumeTrue(CudaDevices.unavailableReason().isPresent(), "a GPU is here: the GPU tests cover running on it");
        Path model = TestModels.tinyMoe(dir);
        CliRunner r = CliRunner.run("generate", "-m", model.toString(), "--device", "cuda:0", "-p", "hi", "-n", "2");
        assertEquals(1, r.exitCode(), r.err());
        assertEquals(1, r.errorLineCount(), r.err());
        assertTrue(r.lastErrLine().startsWith("moe4j: error: CUDA is not available: "), r.err());
    }
}
