package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The llama.cpp-made fixture models open with the architecture and tensor set their metadata implies. */
class GgufFixtureModelsTest {

    private static final List<String> ATTENTION = List.of("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
            "attn_q_norm", "attn_k_norm", "ffn_norm");
    private static final List<String> DENSE_FFN = List.of("ffn_gate", "ffn_up", "ffn_down");
    private static final List<String> MOE_FFN = List.of("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps");

    @TempDir
    Path dir;

    static Stream<String> modelNames() {
        return Stream.concat(
                Stream.of("F32", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "IQ4_XS")
                        .map(q -> "tiny-qwen3moe-" + q + ".gguf"),
                Stream.of("tiny-qwen3-tied-F16.gguf", "tiny-qwen3-tied-Q4_K_M.gguf", "tiny-qwen3-embed-last-Q8_0.gguf",
                        "tiny-qwen3-embed-mean-Q8_0.gguf"));
    }

    @ParameterizedTest
    @MethodSource("modelNames")
    void fixtureModelOpensWithItsExpectedTensors(String name) throws IOException {
        Path path = Fixtures.model(name);
        try (GgufFile f = GgufFile.open(path)) {
            GgufMetadata m = f.metadata();
            String arch = name.startsWith("tiny-qwen3moe-") ? "qwen3moe" : "qwen3";
            assertEquals(arch, m.getString("general.architecture"));
            assertEquals(3, f.version());
            int layers = m.getInt(arch + ".block_count");
            int embd = m.getInt(arch + ".embedding_length");
            int vocab = m.getStringList("tokenizer.ggml.tokens").size();
            assertEquals(vocab, m.getIntArray("tokenizer.ggml.token_type").length);

            Set<String> expected = new HashSet<>(List.of("token_embd.weight", "output_norm.weight"));
            if (arch.equals("qwen3moe")) {
                expected.add("output.weight");    // the qwen3moe fixtures have an untied LM head
            }
            for (int l = 0; l < layers; l++) {
                for (String t : ATTENTION) {
                    expected.add("blk." + l + "." + t + ".weight");
                }
                for (String t : arch.equals("qwen3moe") ? MOE_FFN : DENSE_FFN) {
                    expected.add("blk." + l + "." + t + ".weight");
                }
            }
            assertEquals(expected, new HashSet<>(f.tensors().stream().map(GgufTensor::name).toList()));
            assertEquals(expected.size(), f.tensors().size());

            assertArrayEquals(new long[] {embd, vocab}, f.tensor("token_embd.weight").dims());
            if (arch.equals("qwen3moe")) {
                int experts = m.getInt("qwen3moe.expert_count");
                int ffn = m.getInt("qwen3moe.expert_feed_forward_length");
                assertArrayEquals(new long[] {embd, ffn, experts}, f.tensor("blk.0.ffn_up_exps.weight").dims());
                assertArrayEquals(new long[] {ffn, embd, experts}, f.tensor("blk.0.ffn_down_exps.weight").dims());
                assertArrayEquals(new long[] {embd, experts}, f.tensor("blk.0.ffn_gate_inp.weight").dims());
            }
            assertEquals(GgmlType.F32, f.tensor("output_norm.weight").type());
            for (GgufTensor t : f.tensors()) {
                assertEquals(t.type().bytesFor(t.elementCount()), t.byteSize(), t.name());
                assertEquals(0, (t.fileOffset() - f.dataStart()) % f.alignment(), t.name());
                assertTrue(t.fileOffset() + t.byteSize() <= f.fileBytes(), t.name());
            }
            if (name.contains("-F32")) {
                assertTrue(f.tensors().stream().allMatch(t -> t.type() == GgmlType.F32));
            }
            if (name.contains("K_M")) {
                assertTrue(f.tensors().stream().map(GgufTensor::type).distinct().count() > 2,
                        "K-quant mixes carry several tensor types");
            }
        }
    }

    @Test
    void rewritingAFixtureReproducesItByteForByte() throws IOException {
        Path original = Fixtures.model("tiny-qwen3moe-Q4_K_M.gguf");
        Path copy = dir.resolve("copy.gguf");
        try (GgufFile f = GgufFile.open(original)) {
            GgufWriter w = new GgufWriter().putAll(f.metadata());
            f.tensors().forEach(w::addTensor);
            w.write(copy);
        }
        assertEquals(-1, Files.mismatch(original, copy), "llama.cpp's layout is packed, 32-aligned, in info order");
    }

    @Test
    void vocabOnlyFilesOpen() throws IOException {
        Path vocab = Fixtures.fixturesDir().resolve("vocab");
        try (Stream<Path> files = Files.list(vocab)) {
            List<Path> ggufs = files.filter(p -> p.toString().endsWith(".gguf")).sorted().toList();
            assertFalse(ggufs.isEmpty());
            for (Path p : ggufs) {
                try (GgufFile f = GgufFile.open(p)) {
                    assertEquals(0, f.tensors().size());
                    GgufMetadata m = f.metadata();
                    assertTrue(m.getStringList("tokenizer.ggml.tokens").size() > 1000, p.toString());
                    assertEquals(m.arrayLength("tokenizer.ggml.tokens"), m.getIntArray("tokenizer.ggml.token_type").length);
                }
            }
        }
    }
}
