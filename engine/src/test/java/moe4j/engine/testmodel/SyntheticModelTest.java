package moe4j.engine.testmodel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.PhysicalMemory;

class SyntheticModelTest {

    @TempDir
    Path dir;

    @ParameterizedTest
    @CsvSource({"tiny, Q4_K_M", "tiny, Q3_K_M", "tiny-dense, Q8_0", "tiny-dense, F16"})
    void holdsTheMetadataAndTensorBytesOfTheFileWithTheSameShapeMixAndSeed(String preset, TensorMix mix)
            throws IOException {
        ModelShape shape = ModelShape.preset(preset);
        Path out = dir.resolve(preset + "-" + mix + ".gguf");
        TestModelGenerator.write(shape, mix, 5, out);
        try (GgufFile file = GgufFile.open(out);
             GgufFile synthetic = SyntheticModel.build(shape, mix, 5, "synthetic")) {
            GgufMetadata a = file.metadata();
            GgufMetadata b = synthetic.metadata();
            assertEquals(List.copyOf(a.keys()), List.copyOf(b.keys()));
            for (String key : a.keys()) {
                assertEquals(a.type(key), b.type(key), key);
                assertEquals(a.get(key), b.get(key), key);
            }
            assertEquals(file.tensors().size(), synthetic.tensors().size());
            for (int i = 0; i < file.tensors().size(); i++) {
                GgufTensor t = file.tensors().get(i);
                GgufTensor s = synthetic.tensors().get(i);
                assertEquals(t.name(), s.name());
                assertEquals(t.type(), s.type(), t.name());
                assertArrayEquals(t.shape(), s.shape(), t.name());
                assertEquals(t.nDims(), s.nDims(), t.name());
                assertEquals(-1, t.data().mismatch(s.data()), t.name() + " bytes differ");
            }
            assertEquals(Path.of("synthetic"), synthetic.paths().getFirst());
        }
    }

    @Test
    void givesBitIdenticalLogitsToTheSameModelLoadedFromDisk() throws IOException {
        ModelShape shape = ModelShape.tiny();
        Path out = dir.resolve("tiny.gguf");
        TestModelGenerator.write(shape, TensorMix.Q4_K_M, 11, out);
        int[] prompt = {3, 141, 59, 265, 35, 89, 79, 323};
        LoadOptions options = LoadOptions.defaults().withThreads(2).withBatchSize(4);
        float[][] fromDisk;
        try (Model model = Model.load(out, options); Session s = model.newSession(64)) {
            fromDisk = s.evaluateAll(prompt);
        }
        try (Model model = Model.load(SyntheticModel.build(shape, TensorMix.Q4_K_M, 11, "synthetic-tiny"), options);
             Session s = model.newSession(64)) {
            float[][] inMemory = s.evaluateAll(prompt);
            assertEquals(fromDisk.length, inMemory.length);
            for (int i = 0; i < prompt.length; i++) {
                assertArrayEquals(fromDisk[i], inMemory[i], "logits of token " + i);
            }
            assertEquals(Path.of("synthetic-tiny"), model.path());
        }
    }

    @Test
    void parsesPresetAndOptionalTypeInAnyCase() {
        SyntheticModel.Spec spec = SyntheticModel.Spec.parse("Qwen3-235B-A22B:q3_k_m", TensorMix.Q4_K_M);
        assertEquals("qwen3-235b-a22b", spec.preset());
        assertEquals(TensorMix.Q3_K_M, spec.mix());
        assertEquals(ModelShape.qwen3_235b_a22b(), spec.shape());
        assertEquals("synthetic-qwen3-235b-a22b-Q3_K_M", spec.name());
        SyntheticModel.Spec defaulted = SyntheticModel.Spec.parse("tiny", TensorMix.Q4_K_M);
        assertEquals(TensorMix.Q4_K_M, defaulted.mix());
        assertEquals("synthetic-tiny-Q4_K_M-1L", defaulted.withLayers(1).name());
        assertEquals(1, defaulted.withLayers(1).shape().layers());
    }

    @Test
    void rejectsAnUnknownPresetOrTypeNamingTheKnownOnes() {
        var preset = assertThrows(IllegalArgumentException.class, () -> SyntheticModel.Spec.parse("qwen9", TensorMix.Q4_K_M));
        assertTrue(preset.getMessage().contains("qwen9") && preset.getMessage().contains("qwen3-30b-a3b"),
                preset.getMessage());
        var type = assertThrows(IllegalArgumentException.class, () -> SyntheticModel.Spec.parse("tiny:Q9_K", TensorMix.Q4_K_M));
        assertTrue(type.getMessage().contains("Q9_K") && type.getMessage().contains("Q3_K_M"), type.getMessage());
    }

    @Test
    void refusesWeightsBeyondPhysicalMemoryBeforeAllocating() {
        long gib = 1L << 30;
        var e = assertThrows(IllegalStateException.class,
                () -> SyntheticModel.requireFits(100 * gib, 64 * gib, "big"));
        assertTrue(e.getMessage().contains("big") && e.getMessage().contains("100.0 GiB")
                && e.getMessage().contains("64.0 GiB"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> SyntheticModel.requireFits(63 * gib, 64 * gib, "headroom"));
        assertDoesNotThrow(() -> SyntheticModel.requireFits(60 * gib, 64 * gib, "fits"));

        // ~876 GiB of F32 weights: refused by the check, not by running out of memory part-way
        ModelShape huge = ModelShape.qwen3_235b_a22b();
        long bytes = SyntheticModel.weightBytes(huge, TensorMix.F32);
        assertTrue(bytes > PhysicalMemory.bytes(), "this test assumes less than " + bytes + " bytes of RAM");
        var refused = assertThrows(IllegalStateException.class, () -> SyntheticModel.build(huge, TensorMix.F32, 1, "huge"));
        assertTrue(refused.getMessage().contains("huge"), refused.getMessage());
    }
}
