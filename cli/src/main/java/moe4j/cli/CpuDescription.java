package moe4j.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;

import moe4j.engine.Model;
import moe4j.gguf.PhysicalMemory;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormats;

/**
 * The CPU as {@code info --devices} lists it (model, threads, vector width, RAM), and the note a command prints when
 * the CPU's vectors are too narrow for the fused kernels.
 */
final class CpuDescription {

    private CpuDescription() {}

    /** E.g. {@code AMD EPYC 9B45, 2 threads, 512-bit vectors (fused kernels), 23.5 GiB RAM}. */
    static String line() {
        StringBuilder s = new StringBuilder();
        modelName().ifPresent(name -> s.append(name).append(", "));
        s.append(Runtime.getRuntime().availableProcessors()).append(" threads, ").append(QuantFormats.vectorBits())
                .append("-bit vectors");
        s.append(QuantFormats.fusedKernels() ? " (fused kernels)"
                : InterleavedRows.available() ? " (integer kernels for " + InterleavedRows.types()
                        + ", slower ones for the other types: their fused kernels need 512-bit vectors)"
                : " (generic kernels: the fused ones need 512-bit vectors)");
        long ram = PhysicalMemory.bytes();
        if (ram > 0) {
            s.append(", ").append(Sizes.bytes(ram)).append(" RAM");
        }
        return s.toString();
    }

    /**
     * A note for commands that compute on the CPU where the fused kernels do not run (a CPU without AVX-512, or a JVM
     * started with {@code -XX:MaxVectorSize} below 64).
     */
    static Optional<String> slowKernelsNote(Model model) {
        return model.computesOnCpu() ? slowKernelsNote() : Optional.empty();
    }

    /** The note for any model whose computation the CPU takes part in: present where the fused kernels do not run. */
    static Optional<String> slowKernelsNote() {
        if (QuantFormats.fusedKernels()) {
            return Optional.empty();
        }
        if (InterleavedRows.available()) {
            return Optional.of(String.format(Locale.ROOT, "note: this CPU's vectors are %d bits wide; moe4j runs its"
                    + " integer kernels for %s here (and row kernels for decoding %s, float tiles for the prompts of %s),"
                    + " and generic kernels, several times slower, for the rest, whose fused kernels are written for"
                    + " 512-bit vectors (AVX-512)", QuantFormats.vectorBits(), InterleavedRows.types(),
                    QuantFormats.rowKernelTypesOf256BitVectors(), QuantFormats.promptTileTypes()));
        }
        return Optional.of(String.format(Locale.ROOT, "note: this CPU's vectors are %d bits wide; moe4j's CPU kernels are"
                + " written for 512-bit vectors (AVX-512), so it runs its generic kernels here, several times slower",
                QuantFormats.vectorBits()));
    }

    /** The {@code model name} line of {@code /proc/cpuinfo} (Linux). */
    static Optional<String> modelName() {
        try {
            return Files.readAllLines(Path.of("/proc/cpuinfo")).stream()
                    .filter(l -> l.startsWith("model name"))
                    .map(l -> l.substring(l.indexOf(':') + 1).trim())
                    .filter(n -> !n.isEmpty())
                    .findFirst();
        } catch (IOException | RuntimeException e) {
            return Optional.empty();
        }
    }
}
