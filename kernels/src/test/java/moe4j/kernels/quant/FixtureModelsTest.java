package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.LongStream;
import java.util.stream.Stream;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import moe4j.gguf.Fixtures;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;

/** Real llama.cpp-made files: every tensor type they use decodes, and agrees with the F32 original. */
class FixtureModelsTest {

    private static final String F32_MODEL = "tiny-qwen3moe-F32.gguf";

    /** Sampled rows per tensor: first, middle, last (all rows of small tensors). */
    private static long[] sampleRows(GgufTensor t) {
        long n = t.rowCount();
        return n <= 3 ? LongStream.range(0, n).toArray() : new long[] {0, n / 2, n - 1};
    }

    @TestFactory
    Stream<DynamicTest> everyTensorOfEveryFixtureDequantizesToFiniteValues() {
        Fixtures.requireShared();
        List<Path> models = Fixtures.allModels();
        assertFalse(models.isEmpty(), "no fixture models found");
        return models.stream().map(path -> DynamicTest.dynamicTest(path.getFileName().toString(), () -> {
            try (GgufFile file = GgufFile.open(path)) {
                assertFalse(file.tensors().isEmpty());
                for (GgufTensor t : file.tensors()) {
                    float[] row = new float[Math.toIntExact(t.rowLength())];
                    for (long r : sampleRows(t)) {
                        QuantFormats.dequantizeRow(t, r, row);
                        for (int i = 0; i < row.length; i++) {
                            if (!Float.isFinite(row[i])) {
                                fail(path.getFileName() + " " + t.name() + " (" + t.type() + ") row " + r + " element "
                                        + i + " is " + row[i]);
                            }
                        }
                    }
                }
            }
        }));
    }

    /**
     * The quantized fixtures were made from the F32 one, so each dequantized tensor must be close
     * to its original. Relative RMS bounds per type are loose multiples of the formats' resolution
     * (no importance matrix was used on these random weights).
     */
    @TestFactory
    Stream<DynamicTest> quantizedFixturesReproduceTheF32Weights() throws IOException {
        Path f32Path = Fixtures.model(F32_MODEL);
        Map<GgmlType, Double> bounds = Map.ofEntries(Map.entry(GgmlType.F16, 0.001), Map.entry(GgmlType.Q8_0, 0.01),
                Map.entry(GgmlType.Q6_K, 0.03), Map.entry(GgmlType.Q5_K, 0.06), Map.entry(GgmlType.Q5_0, 0.08),
                Map.entry(GgmlType.Q4_K, 0.12), Map.entry(GgmlType.Q4_0, 0.15), Map.entry(GgmlType.IQ4_XS, 0.15),
                Map.entry(GgmlType.IQ4_NL, 0.15), Map.entry(GgmlType.Q3_K, 0.25), Map.entry(GgmlType.Q2_K, 0.5));
        return Fixtures.allModels().stream()
                .filter(p -> p.getFileName().toString().startsWith("tiny-qwen3moe-") && !p.endsWith(F32_MODEL))
                .map(path -> DynamicTest.dynamicTest(path.getFileName().toString(), () -> {
                    Map<GgmlType, Integer> checked = new HashMap<>();
                    try (GgufFile original = GgufFile.open(f32Path); GgufFile quantized = GgufFile.open(path)) {
                        for (GgufTensor q : quantized.tensors()) {
                            if (q.type() == GgmlType.F32) {
                                continue;
                            }
                            GgufTensor f = original.tensor(q.name());
                            Double bound = bounds.get(q.type());
                            assertTrue(bound != null, "no bound for " + q.type() + " (" + q.name() + ")");
                            double relRms = relativeRmsError(f, q);
                            assertTrue(relRms < bound, path.getFileName() + " " + q.name() + " (" + q.type()
                                    + "): relative RMS error " + relRms + " exceeds " + bound);
                            checked.merge(q.type(), 1, Integer::sum);
                        }
                    }
                    assertFalse(checked.isEmpty(), "no quantized tensors in " + path);
                }));
    }

    /**
     * llama-quantize without an importance matrix runs ggml's reference quantizers, so quantizing the
     * F32 fixture's weights with ours must reproduce the quantized fixtures' bytes exactly.
     */
    @TestFactory
    Stream<DynamicTest> requantizingTheF32FixtureReproducesLlamaQuantizeBytes() {
        Path f32Path = Fixtures.model(F32_MODEL);
        return Fixtures.allModels().stream()
                .filter(p -> p.getFileName().toString().startsWith("tiny-qwen3moe-") && !p.endsWith(F32_MODEL))
                .map(path -> DynamicTest.dynamicTest(path.getFileName().toString(), () -> {
                    int compared = 0;
                    try (GgufFile original = GgufFile.open(f32Path); GgufFile quantized = GgufFile.open(path);
                         Arena arena = Arena.ofConfined()) {
                        for (GgufTensor q : quantized.tensors()) {
                            QuantFormat format = QuantFormats.of(q.type());
                            if (q.type() == GgmlType.F32 || !format.canQuantize()) {
                                continue;
                            }
                            GgufTensor f = original.tensor(q.name());
                            float[] weights = new float[Math.toIntExact(f.elementCount())];
                            QuantFormats.of(GgmlType.F32).dequantize(f.data(), 0, weights, 0, weights.length);
                            MemorySegment ours = arena.allocate(q.byteSize());
                            for (long r = 0; r < q.rowCount(); r++) {
                                int n = Math.toIntExact(q.rowLength());
                                format.quantize(weights, Math.toIntExact(r * n), n, ours, r * q.rowBytes());
                            }
                            long mismatch = ours.mismatch(q.data());
                            assertEquals(-1, mismatch, () -> path.getFileName() + " " + q.name() + " (" + q.type()
                                    + ") differs from llama-quantize at byte " + mismatch + " (block "
                                    + mismatch / q.type().blockBytes() + ")");
                            compared++;
                        }
                    }
                    Assumptions.assumeTrue(compared > 0, path.getFileName() + " holds no type we quantize");
                }));
    }

    private static double relativeRmsError(GgufTensor original, GgufTensor quantized) {
        int n = Math.toIntExact(original.rowLength());
        float[] a = new float[n];
        float[] b = new float[n];
        double err = 0;
        double ref = 0;
        for (long r : sampleRows(original)) {
            QuantFormats.dequantizeRow(original, r, a);
            QuantFormats.dequantizeRow(quantized, r, b);
            for (int i = 0; i < n; i++) {
                err += (double) (a[i] - b[i]) * (a[i] - b[i]);
                ref += (double) a[i] * a[i];
            }
        }
        return Math.sqrt(err / ref);
    }

    @Test
    void fixturesUseOnlySupportedTypes() throws IOException {
        Fixtures.requireShared();
        for (Path path : Fixtures.allModels()) {
            try (GgufFile file = GgufFile.open(path)) {
                for (GgufTensor t : file.tensors()) {
                    assertTrue(QuantFormats.isSupported(t.type()), path.getFileName() + " " + t.name() + " is " + t.type());
                }
            }
        }
    }
}
