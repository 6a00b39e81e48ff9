package moe4j.engine.testmodel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import moe4j.gguf.Fixtures;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufValueType;
import moe4j.kernels.quant.QuantFormats;

class TestModelGeneratorTest {

    @TempDir
    Path dir;

    private Path write(ModelShape shape, TensorMix mix, long seed) throws IOException {
        Path out = dir.resolve(shape.arch() + "-" + mix + "-" + seed + ".gguf");
        TestModelGenerator.write(shape, mix, seed, out);
        return out;
    }

    @ParameterizedTest
    @CsvSource({"qwen3moe, F32", "qwen3moe, Q4_K_M", "qwen3moe, Q3_K_M", "qwen3moe, Q8_0", "qwen3moe, BF16",
            "qwen3, F16", "qwen3, Q4_K_M", "qwen3, Q6_K", "qwen3, Q4_0", "qwen3, IQ4_XS"})
    void writesEveryPlannedTensorWithItsNameShapeAndType(String arch, TensorMix mix) throws IOException {
        ModelShape shape = arch.equals("qwen3") ? ModelShape.tinyDense() : ModelShape.tiny();
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(shape, mix);
        try (GgufFile f = GgufFile.open(write(shape, mix, 7))) {
            assertEquals(plan.size(), f.tensors().size());
            for (int i = 0; i < plan.size(); i++) {
                GgufTensor t = f.tensors().get(i);
                assertEquals(plan.get(i).name(), t.name());
                assertEquals(plan.get(i).type(), t.type(), t.name());
                assertArrayEquals(plan.get(i).dims(), t.dims(), t.name());
            }
            String mlp = shape.isMoe() ? "ffn_down_exps" : "ffn_down";
            // 2 layers: use_more_bits holds for layer 1 only
            if (mix == TensorMix.Q4_K_M) {
                assertEquals(GgmlType.Q4_K, f.tensor("blk.0." + mlp + ".weight").type());
                assertEquals(GgmlType.Q6_K, f.tensor("blk.1." + mlp + ".weight").type());
                assertEquals(GgmlType.Q4_K, f.tensor("blk.0.attn_v.weight").type());
                assertEquals(GgmlType.Q6_K, f.tensor("blk.1.attn_v.weight").type());
                assertEquals(GgmlType.Q6_K, f.tensor(shape.tiedEmbeddings() ? "token_embd.weight" : "output.weight").type());
            }
            for (GgufTensor t : f.tensors()) {
                if (t.name().endsWith("_norm.weight") || t.name().contains("ffn_gate_inp")) {
                    assertEquals(GgmlType.F32, t.type(), t.name());
                }
            }
            assertEquals(shape.tiedEmbeddings(), f.findTensor("output.weight").isEmpty());
        }
    }

    @Test
    void metadataHasTheConvertersKeysAndTypes() throws IOException {
        ModelShape shape = ModelShape.qwen3_30b_a3b().withLayers(1);
        shape = new ModelShape(shape.arch(), 1, 256, 4, 2, 64, 8, 2, 256, 512, 600, shape.context(), shape.ropeBase(),
                shape.rmsEps(), false);
        try (GgufFile f = GgufFile.open(write(shape, TensorMix.Q4_K_M, 1))) {
            GgufMetadata md = f.metadata();
            assertEquals("qwen3moe", md.getString("general.architecture"));
            String[] uint32 = {"block_count", "context_length", "embedding_length", "feed_forward_length",
                    "attention.head_count", "attention.head_count_kv", "attention.key_length",
                    "attention.value_length", "expert_count", "expert_used_count", "expert_feed_forward_length"};
            long[] values = {1, 40960, 256, 512, 4, 2, 64, 64, 8, 2, 256};
            for (int i = 0; i < uint32.length; i++) {
                String key = "qwen3moe." + uint32[i];
                assertEquals(GgufValueType.UINT32, md.type(key), key);
                assertEquals(values[i], md.getLong(key), key);
            }
            assertEquals(GgufValueType.FLOAT32, md.type("qwen3moe.rope.freq_base"));
            assertEquals(1e6f, md.getFloat("qwen3moe.rope.freq_base"));
            assertEquals(GgufValueType.FLOAT32, md.type("qwen3moe.attention.layer_norm_rms_epsilon"));
            assertEquals(1e-6f, md.getFloat("qwen3moe.attention.layer_norm_rms_epsilon"));
            assertEquals(15, md.getInt("general.file_type"));
            assertEquals(GgufValueType.UINT32, md.type("general.file_type"));
            assertEquals(2, md.getInt("general.quantization_version"));

            assertEquals("gpt2", md.getString("tokenizer.ggml.model"));
            assertEquals("qwen2", md.getString("tokenizer.ggml.pre"));
            List<String> tokens = md.getStringList("tokenizer.ggml.tokens");
            assertEquals(600, tokens.size());
            assertEquals(GgufValueType.INT32, md.arrayElementType("tokenizer.ggml.token_type"));
            int[] types = md.getIntArray("tokenizer.ggml.token_type");
            assertEquals(600, types.length);
            assertEquals(GgufValueType.STRING, md.arrayElementType("tokenizer.ggml.merges"));
            assertEquals(600 - 259, md.arrayLength("tokenizer.ggml.merges"));
            assertEquals(GgufValueType.UINT32, md.type("tokenizer.ggml.eos_token_id"));
            assertEquals("<|im_end|>", tokens.get(md.getInt("tokenizer.ggml.eos_token_id")));
            assertEquals("<|endoftext|>", tokens.get(md.getInt("tokenizer.ggml.bos_token_id")));
            assertEquals("<|endoftext|>", tokens.get(md.getInt("tokenizer.ggml.padding_token_id")));
            assertEquals(TestVocabulary.CONTROL, types[md.getInt("tokenizer.ggml.eos_token_id")]);
            assertFalse(md.getBoolean("tokenizer.ggml.add_bos_token"));
            assertTrue(md.getString("tokenizer.chat_template").contains("<|im_start|>"));
            // 8 experts: llama-quantize's 8-expert rule bumps attn_k/attn_v to Q8_0
            assertEquals(GgmlType.Q8_0, f.tensor("blk.0.attn_k.weight").type());
            assertEquals(GgmlType.Q8_0, f.tensor("blk.0.attn_v.weight").type());
        }
    }

    /** The tiny presets carry the same keys, with the same types and hyperparameter values, as the fixtures. */
    @ParameterizedTest
    @CsvSource({"tiny-qwen3moe-Q4_K_M.gguf, qwen3moe, Q4_K_M", "tiny-qwen3-tied-F16.gguf, qwen3, F16"})
    void tinyPresetsMatchTheFixturesMetadata(String fixture, String arch, TensorMix mix) throws IOException {
        Path reference = Fixtures.model(fixture);
        ModelShape shape = arch.equals("qwen3") ? ModelShape.tinyDense() : ModelShape.tiny();
        try (GgufFile ref = GgufFile.open(reference); GgufFile gen = GgufFile.open(write(shape, mix, 3))) {
            GgufMetadata r = ref.metadata();
            GgufMetadata g = gen.metadata();
            Set<String> missing = new HashSet<>(r.keys());
            missing.removeAll(g.keys());
            assertEquals(Set.of(), missing, "keys of the fixture the generated file lacks");
            for (String key : r.keys()) {
                assertEquals(r.type(key), g.type(key), key);
                if (key.startsWith(arch + ".") || key.equals("general.file_type")
                        || key.equals("tokenizer.ggml.pre") || key.equals("tokenizer.ggml.model")
                        || key.endsWith("_token_id") || key.equals("tokenizer.ggml.add_bos_token")) {
                    assertEquals(r.get(key), g.get(key), key);
                }
            }
            assertEquals(r.arrayLength("tokenizer.ggml.tokens"), g.arrayLength("tokenizer.ggml.tokens"));
            assertEquals(r.arrayLength("tokenizer.ggml.merges"), g.arrayLength("tokenizer.ggml.merges"));
            // the byte symbols come first in the same order as in the real Qwen vocabulary
            assertEquals(r.getStringList("tokenizer.ggml.tokens").subList(0, 256),
                    g.getStringList("tokenizer.ggml.tokens").subList(0, 256));
            assertEquals(r.getStringList("tokenizer.ggml.tokens").subList(512, 515),
                    g.getStringList("tokenizer.ggml.tokens").subList(512, 515));
        }
    }

    @Test
    void sameSeedGivesTheSameFileAndAnotherSeedOtherWeights() throws IOException {
        ModelShape shape = ModelShape.tiny();
        Path a = write(shape, TensorMix.Q4_K_M, 11);
        Path b = dir.resolve("again.gguf");
        TestModelGenerator.write(shape, TensorMix.Q4_K_M, 11, b);
        Path c = write(shape, TensorMix.Q4_K_M, 12);
        assertEquals(-1, Files.mismatch(a, b));
        try (GgufFile fa = GgufFile.open(a); GgufFile fc = GgufFile.open(c)) {
            for (GgufTensor t : fa.tensors()) {
                assertNotEquals(-1, t.data().mismatch(fc.tensor(t.name()).data()), t.name() + " ignores the seed");
            }
        }
    }

    /** Weights decode to finite values with the intended spread: matrices ~ 1/sqrt(n_in), norms ~ 1. */
    @ParameterizedTest
    @CsvSource({"F32", "F16", "BF16", "Q8_0", "Q4_K_M", "Q3_K_M"})
    void weightsHaveTheIntendedScale(TensorMix mix) throws IOException {
        ModelShape shape = ModelShape.tiny();
        try (GgufFile f = GgufFile.open(write(shape, mix, 5))) {
            double[] q = stats(f.tensor("blk.0.attn_q.weight"));
            double expectedStd = 1 / Math.sqrt(shape.embd());
            assertEquals(0, q[0], 0.1 * expectedStd, "mean of attn_q");
            assertEquals(expectedStd, q[1], 0.2 * expectedStd, "std of attn_q");
            double[] norm = stats(f.tensor("blk.1.ffn_norm.weight"));
            assertEquals(1, norm[0], 0.01);
            assertTrue(norm[1] > 0.005 && norm[1] < 0.05, "norm noise " + norm[1]);
        }
    }

    /** Random blocks (used above the quantization limit) must also decode to finite numbers. */
    @Test
    void largeTensorsGetValidRandomBlocks() throws IOException {
        ModelShape shape = new ModelShape("qwen3moe", 1, 512, 4, 2, 128, 64, 2, 512, 1024, 300, 1024, 1e6f, 1e-6f,
                false);
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(shape, TensorMix.Q4_K_M);
        assertTrue(plan.stream().anyMatch(t -> t.elementCount() > TestModelGenerator.QUANTIZE_LIMIT));
        try (GgufFile f = GgufFile.open(write(shape, TensorMix.Q4_K_M, 9))) {
            for (TestModelGenerator.TensorPlan p : plan) {
                if (p.elementCount() > TestModelGenerator.QUANTIZE_LIMIT) {
                    double[] s = stats(f.tensor(p.name()));
                    assertTrue(Double.isFinite(s[0]) && Double.isFinite(s[1]) && s[1] > 0, p.name());
                }
            }
        }
    }

    @Test
    void progressIsReportedPerTensorUpToTheTotal() throws IOException {
        List<Long> done = new ArrayList<>();
        long[] total = new long[1];
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.Q8_0, 1, dir.resolve("p.gguf"), (name, d, t) -> {
            done.add(d);
            total[0] = t;
        });
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(ModelShape.tiny(), TensorMix.Q8_0);
        assertEquals(plan.size(), done.size());
        assertEquals(plan.stream().mapToLong(TestModelGenerator.TensorPlan::byteSize).sum(), total[0]);
        assertEquals(total[0], done.getLast());
        for (int i = 1; i < done.size(); i++) {
            assertTrue(done.get(i) > done.get(i - 1));
        }
    }

    /** mean and standard deviation of a tensor's first rows, decoded. */
    private static double[] stats(GgufTensor t) {
        int rowLength = (int) t.rowLength();
        float[] row = new float[rowLength];
        double sum = 0;
        double sumSq = 0;
        long n = 0;
        for (long r = 0; r < Math.min(t.rowCount(), 64); r++) {
            QuantFormats.dequantizeRow(t, r, row);
            for (float v : row) {
                assertTrue(Float.isFinite(v), t.name() + " has a non-finite value");
                sum += v;
                sumSq += (double) v * v;
                n++;
            }
        }
        double mean = sum / n;
        return new double[] {mean, Math.sqrt(sumSq / n - mean * mean)};
    }
}
