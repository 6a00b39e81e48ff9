package moe4j.engine.testmodel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import moe4j.gguf.Fixtures;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;

class TensorMixTest {

    private static Map<String, GgmlType> types(ModelShape shape, TensorMix mix) {
        return TestModelGenerator.plan(shape, mix).stream()
                .collect(Collectors.toMap(TestModelGenerator.TensorPlan::name, TestModelGenerator.TensorPlan::type));
    }

    /** Layers llama-quantize gives more bits under Q4_K_M, per the table in quant-formats.md 5.6. */
    @Test
    void q4KmUpgradesTheDocumentedLayersOf30bA3b() {
        Map<String, GgmlType> t = types(ModelShape.qwen3_30b_a3b(), TensorMix.Q4_K_M);
        List<Integer> expected = IntStream.range(0, 48)
                .filter(i -> i <= 5 || i >= 42 || (i >= 8 && i <= 41 && (i - 8) % 3 == 0)).boxed().toList();
        List<Integer> q6Down = IntStream.range(0, 48)
                .filter(i -> t.get("blk." + i + ".ffn_down_exps.weight") == GgmlType.Q6_K).boxed().toList();
        List<Integer> q6V = IntStream.range(0, 48)
                .filter(i -> t.get("blk." + i + ".attn_v.weight") == GgmlType.Q6_K).boxed().toList();
        assertEquals(expected, q6Down);
        assertEquals(expected, q6V);
        for (int i = 0; i < 48; i++) {
            String p = "blk." + i + ".";
            assertEquals(GgmlType.Q4_K, t.get(p + "ffn_gate_exps.weight"));
            assertEquals(GgmlType.Q4_K, t.get(p + "ffn_up_exps.weight"));
            assertEquals(GgmlType.Q4_K, t.get(p + "attn_q.weight"));
            assertEquals(GgmlType.Q4_K, t.get(p + "attn_k.weight"));
            assertEquals(GgmlType.Q4_K, t.get(p + "attn_output.weight"));
            assertEquals(GgmlType.F32, t.get(p + "ffn_gate_inp.weight"));
            assertEquals(GgmlType.F32, t.get(p + "attn_norm.weight"));
            assertEquals(GgmlType.F32, t.get(p + "attn_q_norm.weight"));
            if (!expected.contains(i)) {
                assertEquals(GgmlType.Q4_K, t.get(p + "ffn_down_exps.weight"));
            }
        }
        assertEquals(GgmlType.Q6_K, t.get("output.weight"));
        assertEquals(GgmlType.Q4_K, t.get("token_embd.weight"));
        assertEquals(GgmlType.F32, t.get("output_norm.weight"));
    }

    @Test
    void q3KmFollowsTheDocumentedRulesFor94Layers() {
        Map<String, GgmlType> t = types(ModelShape.qwen3_235b_a22b(), TensorMix.Q3_K_M);
        for (int i = 0; i < 94; i++) {
            String p = "blk." + i + ".";
            assertEquals(i < 2 ? GgmlType.Q5_K : GgmlType.Q4_K, t.get(p + "attn_v.weight"), p);
            assertEquals(i <= 4 ? GgmlType.Q5_K : GgmlType.Q4_K, t.get(p + "ffn_down_exps.weight"), p);
            assertEquals(GgmlType.Q4_K, t.get(p + "attn_output.weight"));
            assertEquals(GgmlType.Q3_K, t.get(p + "attn_q.weight"));
            assertEquals(GgmlType.Q3_K, t.get(p + "ffn_up_exps.weight"));
        }
        assertEquals(GgmlType.Q3_K, t.get("token_embd.weight"));
        assertEquals(GgmlType.Q6_K, t.get("output.weight"));
    }

    @Test
    void tiedEmbeddingsAreTreatedLikeTheOutputTensor() {
        Map<String, GgmlType> t = types(ModelShape.qwen3_0_6b(), TensorMix.Q4_K_M);
        assertFalse(t.containsKey("output.weight"));
        assertEquals(GgmlType.Q6_K, t.get("token_embd.weight"));
        assertEquals(GgmlType.Q8_0, types(ModelShape.qwen3_0_6b(), TensorMix.Q8_0).get("token_embd.weight"));
    }

    @Test
    void floatMixesKeepNormsAndRouterInF32() {
        for (TensorMix mix : List.of(TensorMix.F16, TensorMix.BF16)) {
            Map<String, GgmlType> t = types(ModelShape.tiny(), mix);
            assertEquals(mix.defaultType(), t.get("blk.0.ffn_down_exps.weight"));
            assertEquals(mix.defaultType(), t.get("output.weight"));
            assertEquals(GgmlType.F32, t.get("blk.1.ffn_gate_inp.weight"));
            assertEquals(GgmlType.F32, t.get("blk.1.attn_k_norm.weight"));
            assertFalse(mix.isQuantized());
        }
        assertTrue(types(ModelShape.tiny(), TensorMix.F32).values().stream().allMatch(GgmlType.F32::equals));
    }

    /** Rows that are not whole 256-blocks fall back to a 32-block type, as llama-quantize does. */
    @ParameterizedTest
    @CsvSource({"Q4_K_M, Q5_0, Q8_0", "Q3_K_M, Q4_0, Q8_0", "Q6_K, Q8_0, Q8_0", "IQ4_XS, IQ4_NL, Q8_0"})
    void rowsThatAreNotWholeSuperBlocksFallBack(TensorMix mix, GgmlType gate, GgmlType output) {
        ModelShape shape = new ModelShape("qwen3moe", 2, 96, 2, 1, 48, 4, 2, 64, 128, 300, 512, 1e6f, 1e-6f, false);
        Map<String, GgmlType> t = types(shape, mix);
        assertEquals(gate, t.get("blk.0.ffn_gate_exps.weight"));
        assertEquals(output, t.get("output.weight"));
        // rows of 40 fit no block type but F16
        ModelShape odd = new ModelShape("qwen3", 1, 40, 2, 1, 20, 0, 0, 0, 64, 300, 512, 1e6f, 1e-6f, true);
        assertEquals(GgmlType.F16, types(odd, mix).get("blk.0.attn_q.weight"));
    }

    @Test
    void useMoreBitsMatchesTheDocumentedLayerSets() {
        // quant-formats.md 5.6, 28 layers: 0-2, 5, 8, 11, 14, 17, 20, 23-27
        List<Integer> expected = List.of(0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27);
        assertEquals(expected, IntStream.range(0, 28).filter(i -> TensorMix.useMoreBits(i, 28)).boxed().toList());
    }

    /** The conformance fixtures were typed by llama-quantize itself: every tensor must get the same type. */
    @ParameterizedTest
    @CsvSource({"tiny-qwen3moe-F32.gguf, F32", "tiny-qwen3moe-Q8_0.gguf, Q8_0", "tiny-qwen3moe-Q6_K.gguf, Q6_K",
            "tiny-qwen3moe-Q5_K_M.gguf, Q5_K_M", "tiny-qwen3moe-Q4_K_M.gguf, Q4_K_M", "tiny-qwen3moe-Q4_0.gguf, Q4_0",
            "tiny-qwen3moe-Q3_K_M.gguf, Q3_K_M", "tiny-qwen3moe-Q2_K.gguf, Q2_K", "tiny-qwen3moe-IQ4_XS.gguf, IQ4_XS",
            "tiny-qwen3-tied-F16.gguf, F16", "tiny-qwen3-tied-Q4_K_M.gguf, Q4_K_M"})
    void planMatchesTheTypesAndShapesLlamaQuantizeChoseForTheFixtures(String fixture, TensorMix mix) throws IOException {
        Path path = Fixtures.model(fixture);
        ModelShape shape = fixture.contains("qwen3moe") ? ModelShape.tiny() : ModelShape.tinyDense();
        try (GgufFile f = GgufFile.open(path)) {
            Map<String, GgufTensor> actual = f.tensors().stream()
                    .collect(Collectors.toMap(GgufTensor::name, Function.identity(), (a, b) -> a, TreeMap::new));
            Map<String, TestModelGenerator.TensorPlan> planned = TestModelGenerator.plan(shape, mix).stream()
                    .collect(Collectors.toMap(TestModelGenerator.TensorPlan::name, Function.identity(), (a, b) -> a,
                            TreeMap::new));
            assertEquals(actual.keySet(), planned.keySet());
            for (String name : actual.keySet()) {
                assertEquals(actual.get(name).type(), planned.get(name).type(), name);
                assertEquals(List.of(box(actual.get(name).dims())), List.of(box(planned.get(name).dims())), name);
            }
            assertEquals(mix.fileType(), f.metadata().getInt("general.file_type"));
        }
    }

    private static Long[] box(long[] a) {
        return java.util.Arrays.stream(a).boxed().toArray(Long[]::new);
    }
}
