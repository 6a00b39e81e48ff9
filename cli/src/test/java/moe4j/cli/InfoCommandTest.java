package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.Fixtures;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufWriter;

class InfoCommandTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    /** Distinct values everywhere, so a swapped field cannot pass. */
    private static final ModelShape SHAPE = new ModelShape("qwen3moe", 3, 512, 8, 2, 96, 16, 4, 256, 1536, 777,
            8192, 5e5f, 1e-5f, false);

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void generate() throws IOException {
        model = dir.resolve("model.gguf");
        TestModelGenerator.write(SHAPE, TensorMix.Q4_K_M, 1, model);
    }

    @Test
    void textShowsTheHyperparametersAndTensorTypes() {
        CliRunner r = CliRunner.run("info", "-m", model.toString());
        assertEquals(0, r.exitCode(), r.err());
        String out = r.out();
        assertLine(out, "architecture", "qwen3moe");
        assertLine(out, "layers", "3");
        assertLine(out, "embedding size", "512");
        assertLine(out, "heads", "8");
        assertLine(out, "kv heads", "2");
        assertLine(out, "key head dim", "96");
        assertLine(out, "experts", "16");
        assertLine(out, "experts used", "4");
        assertLine(out, "expert ffn size", "256");
        assertLine(out, "ffn size", "1536");
        assertLine(out, "context length", "8192");
        assertLine(out, "rope base", "500000");
        assertLine(out, "vocab size", "777");
        assertLine(out, "tokenizer", "gpt2 (pre qwen2)");
        int tensors = TestModelGenerator.plan(SHAPE, TensorMix.Q4_K_M).size();
        assertLine(out, "tensors", Integer.toString(tensors));
        assertTrue(out.lines().anyMatch(l -> l.matches("\\s+Q6_K\\s+\\d+ tensors\\s+.*")), out);
        assertFalse(out.contains("metadata:"), "metadata listing only with --verbose");
        assertEquals("", r.err().replaceAll("(?m)^WARNING: Using incubator.*\\R", ""));
    }

    @Test
    void jsonHasTheExactValuesOfTheGeneratedShape() throws IOException {
        CliRunner r = CliRunner.run("info", "-m", model.toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode j = JSON.readTree(r.out());
        assertEquals("qwen3moe", j.get("architecture").asText());
        assertEquals(SHAPE.layers(), j.get("block_count").asInt());
        assertEquals(SHAPE.embd(), j.get("embedding_length").asInt());
        assertEquals(SHAPE.heads(), j.get("head_count").asInt());
        assertEquals(SHAPE.kvHeads(), j.get("head_count_kv").asInt());
        assertEquals(SHAPE.headDim(), j.get("key_length").asInt());
        assertEquals(SHAPE.headDim(), j.get("value_length").asInt());
        assertEquals(SHAPE.experts(), j.get("expert_count").asInt());
        assertEquals(SHAPE.expertsUsed(), j.get("expert_used_count").asInt());
        assertEquals(SHAPE.expertFfn(), j.get("expert_feed_forward_length").asInt());
        assertEquals(SHAPE.ffn(), j.get("feed_forward_length").asInt());
        assertEquals(SHAPE.context(), j.get("context_length").asInt());
        assertEquals(SHAPE.ropeBase(), j.get("rope_freq_base").asDouble());
        assertEquals(1e-5, j.get("layer_norm_rms_epsilon").asDouble());
        assertEquals(SHAPE.vocab(), j.get("vocab_size").asInt());

        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(SHAPE, TensorMix.Q4_K_M);
        long params = plan.stream().mapToLong(TestModelGenerator.TensorPlan::elementCount).sum();
        long bytes = plan.stream().mapToLong(TestModelGenerator.TensorPlan::byteSize).sum();
        assertEquals(plan.size(), j.get("tensor_count").asInt());
        assertEquals(params, j.get("parameter_count").asLong());
        assertEquals(8.0 * bytes / params, j.get("bits_per_weight").asDouble(), 1e-12);
        long q6 = plan.stream().filter(t -> t.type().toString().equals("Q6_K")).count();
        assertEquals(q6, j.get("tensor_types").get("Q6_K").asLong());
        assertEquals(plan.stream().filter(t -> t.type().toString().equals("Q6_K"))
                .mapToLong(TestModelGenerator.TensorPlan::byteSize).sum(), j.get("tensor_type_bytes").get("Q6_K").asLong());
        assertEquals(Files.size(model), j.get("file_size").asLong());
        assertEquals(model.toString(), j.get("files").get(0).asText());
        assertFalse(j.has("tensors"), "tensor list only with --tensors");
    }

    @Test
    void jsonHasNullsForHyperparametersADenseModelLacks(@TempDir Path tmp) throws IOException {
        Path dense = tmp.resolve("dense.gguf");
        TestModelGenerator.write(ModelShape.tinyDense(), TensorMix.F16, 2, dense);
        JsonNode j = JSON.readTree(CliRunner.run("info", "-m", dense.toString(), "--json").out());
        assertEquals("qwen3", j.get("architecture").asText());
        assertTrue(j.get("expert_count").isNull());
        assertTrue(j.get("expert_used_count").isNull());
        assertTrue(j.get("expert_feed_forward_length").isNull());
        assertEquals(512, j.get("feed_forward_length").asInt());
    }

    @Test
    void tensorsListsEveryTensorInTextAndJson() throws IOException {
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(SHAPE, TensorMix.Q4_K_M);
        CliRunner text = CliRunner.run("info", "-m", model.toString(), "--tensors");
        assertEquals(0, text.exitCode());
        for (TestModelGenerator.TensorPlan t : plan) {
            assertTrue(text.out().lines().anyMatch(l -> l.startsWith(t.name() + " ") && l.contains(" " + t.type() + " ")),
                    t.name());
        }
        JsonNode j = JSON.readTree(CliRunner.run("info", "-m", model.toString(), "--json", "--tensors").out());
        JsonNode list = j.get("tensors");
        assertEquals(plan.size(), list.size());
        try (GgufFile f = GgufFile.open(model)) {
            for (int i = 0; i < plan.size(); i++) {
                GgufTensor t = f.tensors().get(i);
                JsonNode e = list.get(i);
                assertEquals(t.name(), e.get("name").asText());
                assertEquals(t.type().toString(), e.get("type").asText());
                assertEquals(t.fileOffset(), e.get("offset").asLong());
                assertEquals(t.byteSize(), e.get("bytes").asLong());
                List<Long> shape = new ArrayList<>();
                e.get("shape").forEach(n -> shape.add(n.asLong()));
                assertEquals(java.util.Arrays.stream(t.dims()).boxed().toList(), shape);
            }
        }
    }

    @Test
    void splitModelsAreShownAsOneWithTheirParts(@TempDir Path tmp) throws IOException {
        List<Path> parts;
        try (GgufFile f = GgufFile.open(model)) {
            GgufWriter w = new GgufWriter().putAll(f.metadata());
            f.tensors().forEach(w::addTensor);
            parts = w.writeSplit(tmp.resolve("split.gguf"), 3);
        }
        CliRunner r = CliRunner.run("info", "-m", parts.getFirst().toString(), "--json", "--tensors");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode j = JSON.readTree(r.out());
        assertEquals(3, j.get("files").size());
        long total = 0;
        for (int i = 0; i < 3; i++) {
            assertEquals(parts.get(i).toString(), j.get("files").get(i).asText());
            assertEquals(Files.size(parts.get(i)), j.get("file_sizes").get(i).asLong());
            total += Files.size(parts.get(i));
        }
        assertEquals(total, j.get("file_size").asLong());
        assertEquals(TestModelGenerator.plan(SHAPE, TensorMix.Q4_K_M).size(), j.get("tensors").size());
        assertEquals(parts.getLast().toString(), j.get("tensors").get(j.get("tensors").size() - 1).get("file").asText());
        assertEquals(SHAPE.layers(), j.get("block_count").asInt());

        String text = CliRunner.run("info", "-m", parts.getFirst().toString()).out();
        for (int i = 0; i < 3; i++) {
            assertTrue(text.contains("part " + (i + 1) + "/3:"), text);
        }
    }

    @Test
    void verboseAlsoListsTheMetadata() {
        CliRunner r = CliRunner.run("info", "-m", model.toString(), "--verbose");
        assertEquals(0, r.exitCode());
        assertTrue(r.out().contains("qwen3moe.expert_count = 16 (UINT32)"), r.out());
        assertTrue(r.out().contains("tokenizer.ggml.tokens = [\"!\""), r.out());
    }

    @Test
    void corruptFileGivesExitCode1AndOneErrorLineNamingTheFile(@TempDir Path tmp) throws IOException {
        Path bad = tmp.resolve("broken-model.gguf");
        byte[] head = Files.readAllBytes(model);
        Files.write(bad, java.util.Arrays.copyOf(head, 4000));   // cut inside the metadata
        CliRunner r = CliRunner.run("info", "-m", bad.toString());
        assertEquals(1, r.exitCode());
        assertEquals("", r.out());
        String[] lines = r.errLines();
        assertEquals(1, lines.length, r.err());
        assertTrue(lines[0].startsWith("moe4j: error: "), lines[0]);
        assertTrue(lines[0].contains("broken-model.gguf"), lines[0]);

        Files.writeString(bad, "this is not a model");
        r = CliRunner.run("info", "-m", bad.toString());
        assertEquals(1, r.exitCode());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(r.err().contains("broken-model.gguf"), r.err());
    }

    @Test
    void verboseAddsTheStackTraceToErrors(@TempDir Path tmp) throws IOException {
        Path bad = tmp.resolve("x.gguf");
        Files.writeString(bad, "GGUF garbage");
        CliRunner r = CliRunner.run("info", "-m", bad.toString(), "--verbose");
        assertEquals(1, r.exitCode());
        assertTrue(r.errLines().length > 1);
        assertTrue(r.err().contains("GgufFormatException"), r.err());
    }

    @Test
    void missingFileAndMissingOptionAreReportedOnOneLine() {
        CliRunner r = CliRunner.run("info", "-m", dir.resolve("nope.gguf").toString());
        assertEquals(1, r.exitCode());
        assertEquals(1, r.errLines().length);
        assertTrue(r.err().contains("file not found") && r.err().contains("nope.gguf"), r.err());

        r = CliRunner.run("info");
        assertEquals(2, r.exitCode());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(r.err().startsWith("moe4j: error: ") && r.err().contains("--model"), r.err());
    }

    static List<Path> fixtures() {
        return Fixtures.allModels();
    }

    /** On the llama.cpp-made fixtures the JSON agrees with the metadata read directly. */
    @ParameterizedTest(allowZeroInvocations = true)   // without ../shared, the test below reports the skip
    @MethodSource("fixtures")
    void jsonAgreesWithTheFixturesMetadata(Path fixture) throws IOException {
        CliRunner r = CliRunner.run("info", "-m", fixture.toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode j = JSON.readTree(r.out());
        try (GgufFile f = GgufFile.open(fixture)) {
            GgufMetadata md = f.metadata();
            String arch = md.getString("general.architecture");
            assertEquals(arch, j.get("architecture").asText());
            assertEquals(md.getLong(arch + ".block_count"), j.get("block_count").asLong());
            assertEquals(md.getLong(arch + ".embedding_length"), j.get("embedding_length").asLong());
            assertEquals(md.getLong(arch + ".attention.head_count_kv"), j.get("head_count_kv").asLong());
            assertEquals(md.getLong(arch + ".feed_forward_length"), j.get("feed_forward_length").asLong());
            assertEquals(md.getFloat(arch + ".attention.layer_norm_rms_epsilon"),
                    (float) j.get("layer_norm_rms_epsilon").asDouble());
            if (arch.equals("qwen3moe")) {
                assertEquals(md.getLong("qwen3moe.expert_count"), j.get("expert_count").asLong());
            } else {
                assertTrue(j.get("expert_count").isNull());
            }
            assertEquals(md.arrayLength("tokenizer.ggml.tokens"), j.get("vocab_size").asInt());
            assertEquals(f.tensors().size(), j.get("tensor_count").asInt());
            assertEquals(f.tensors().stream().mapToLong(GgufTensor::elementCount).sum(), j.get("parameter_count").asLong());
            assertEquals(Files.size(fixture), j.get("file_size").asLong());
        }
    }

    @Test
    void fixtureListIsNotEmptyWhenSharedIsPresent() {
        Fixtures.requireShared();
        assertFalse(fixtures().isEmpty(), "no fixture models found in shared/fixtures/models");
    }

    private static void assertLine(String out, String label, String value) {
        assertTrue(out.lines().anyMatch(l -> l.matches(java.util.regex.Pattern.quote(label + ":") + "\\s+"
                + java.util.regex.Pattern.quote(value))), "no line '" + label + ": " + value + "' in:\n" + out);
    }
}
