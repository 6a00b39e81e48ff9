package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.placement.ModelFootprint;
import moe4j.engine.placement.ModelFootprint.TensorFootprint;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.quant.InterleavedRows;

class PlanCommandTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;

    private static JsonNode json(String... args) throws IOException {
        CliRunner r = CliRunner.run(args);
        assertEquals(0, r.exitCode(), r.err());
        return JSON.readTree(r.out());
    }

    private static long sum(JsonNode devices, String key) {
        long s = 0;
        for (JsonNode d : devices) {
            s += d.get(key).asLong();
        }
        return s;
    }

    @Test
    void presetOnTwoGpusAndRamAsJson() throws IOException {
        JsonNode j = json("plan", "--model", "qwen3-235b-a22b:Q4_K_M", "--gpu", "rtx5090,rtx5090", "--ram", "128G",
                "--ctx", "32768", "--no-repack", "--json");
        assertFalse(j.get("cpu_repack").asBoolean());
        assertTrue(j.get("fits").asBoolean());
        assertTrue(j.get("message").isNull());
        assertTrue(j.get("estimated_tg_tok_s").asDouble() > 0);
        JsonNode devices = j.get("devices");
        assertEquals(3, devices.size());
        assertEquals("cuda:0", devices.get(0).get("name").asText());
        assertEquals("cuda:1", devices.get(1).get("name").asText());
        assertEquals("cpu", devices.get(2).get("name").asText());
        for (String key : new String[] {"name", "capacity_bytes", "weights_bytes", "kv_bytes", "scratch_bytes", "layers"}) {
            for (JsonNode d : devices) {
                assertTrue(d.has(key), key);
            }
        }
        assertEquals(32 * GIB, devices.get(0).get("capacity_bytes").asLong());
        assertEquals(128 * GIB, devices.get(2).get("capacity_bytes").asLong());
        assertEquals(j.get("model").get("weights_bytes").asLong(), sum(devices, "weights_bytes"));
        assertEquals(94 * 64 * MIB, sum(devices, "kv_bytes"), "94 layers x 2 x 32768 x 512 x 2 bytes");
        int layers = 0;
        for (JsonNode d : devices) {
            layers += d.get("layers").size();
            assertTrue(d.get("free_bytes").asLong() >= 0);
        }
        assertEquals(94, layers);
        assertEquals(94, j.get("layers").size());
        assertEquals(0, devices.get(2).get("layers").size(), "attention of every layer fits on the GPUs");
    }

    /** {@code --repack} plans system RAM with the CPU's repacked Q4_K (and Q5_K) matrices; the GPUs hold the file's bytes. */
    @Test
    void repackingAddsTheCopysExtraBytesToSystemRam() throws IOException {
        String[] base = {"plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G", "--cpu-moe", "--json"};
        JsonNode asFile = json(concat(base, "--no-repack"));
        JsonNode repacked = json(concat(base, "--repack"));
        assertTrue(repacked.get("cpu_repack").asBoolean());
        assertEquals(asFile.get("devices").get(0), repacked.get("devices").get(0));
        long extra = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M").tensors().stream()
                .filter(t -> t.part() == ModelFootprint.Part.EXPERTS)
                .mapToLong(t -> t.repackedBytes() - t.bytes()).sum();
        assertTrue(extra > 0);
        assertEquals(asFile.get("devices").get(1).get("weights_bytes").asLong() + extra,
                repacked.get("devices").get(1).get("weights_bytes").asLong());
        CliRunner text = CliRunner.run("plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--ram", "64G", "--repack");
        assertTrue(text.out().contains(InterleavedRows.types() + " matrices repacked in RAM"), text.out());
    }

    @Test
    void presetTextNamesDevicesAndVerdict() {
        CliRunner r = CliRunner.run("plan", "-m", "Qwen3-30B-A3B:q4_k_m", "--gpu", "3x24G", "--ram", "64G");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("qwen3-30b-a3b:Q4_K_M"), r.out());
        for (String s : new String[] {"cuda:0", "cuda:1", "cuda:2", "cpu", "fits: yes", "decode ceiling"}) {
            assertTrue(r.out().contains(s), s + " in\n" + r.out());
        }
    }

    @Test
    void notFittingSaysWhatIsShortByHowMuch() throws IOException {
        JsonNode j = json("plan", "--model", "qwen3-235b-a22b:Q8_0", "--gpu", "rtx5090", "--ram", "64G", "--json");
        assertFalse(j.get("fits").asBoolean());
        String message = j.get("message").asText();
        assertTrue(message.startsWith("cpu (DDR5-5600 x2) is short by "), message);
        JsonNode cpu = j.get("devices").get(1);
        assertFalse(cpu.get("fits").asBoolean());
        long needs = cpu.get("weights_bytes").asLong() + cpu.get("kv_bytes").asLong() + cpu.get("scratch_bytes").asLong();
        assertEquals(64 * GIB - 512 * MIB - needs, cpu.get("free_bytes").asLong());
    }

    @Test
    void cpuMoeAndOverridesMoveExpertsToRam() throws IOException {
        JsonNode cpuMoe = json("plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G", "--cpu-moe",
                "--json");
        JsonNode ot = json("plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G", "-ot", "exps=CPU",
                "--json");
        for (JsonNode j : new JsonNode[] {cpuMoe, ot}) {
            assertEquals(48, j.get("devices").get(0).get("layers").size());
            assertEquals(0, j.get("devices").get(0).get("expert_layers").size());
            assertEquals(48, j.get("devices").get(1).get("expert_layers").size());
        }
        assertEquals(cpuMoe.get("devices"), ot.get("devices"));

        JsonNode some = json("plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G", "--n-cpu-moe", "10",
                "--json");
        assertEquals(10, some.get("devices").get(1).get("expert_layers").size());
        assertEquals(0, some.get("devices").get(1).get("expert_layers").get(0).asInt());

        // the router runs with the experts: pinning it away from them describes nothing moe4j can run
        CliRunner router = CliRunner.run("plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G",
                "--cpu-moe", "-ot", "ffn_gate_inp=CUDA0");
        assertEquals(2, router.exitCode(), router.err());
        assertEquals(1, router.errorLineCount(), router.err());
        assertTrue(router.lastErrLine().contains("Layer 0's feed-forward block runs on one device, but"
                + " blk.0.ffn_gate_inp.weight would be on cuda:0"), router.err());
    }

    /**
     * With every expert in RAM the GPU keeps room for two of the blocks prompt batches copy in; {@code --stage-batch 0}
     * gives that room back, and a negative value is refused as bad usage.
     */
    @Test
    void stageBatchZeroGivesTheStagingRoomBack() throws IOException {
        String[] base = {"plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "h100", "--ram", "64G", "--cpu-moe", "--json"};
        JsonNode staged = json(base);
        JsonNode never = json(concat(base, "--stage-batch", "0"));
        long room = staged.get("devices").get(0).get("scratch_bytes").asLong()
                - never.get("devices").get(0).get("scratch_bytes").asLong();
        long block = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M").tensors().stream()   // norm, router, experts
                .filter(t -> t.layer() == 0 && t.part().feedForward()).mapToLong(TensorFootprint::bytes).sum();
        assertTrue(room > 2 * block && room < 2 * block + (64L << 20),
                "two blocks of " + block + " bytes and their buffers, got " + room);
        CliRunner bad = CliRunner.run(concat(base, "--stage-batch", "-1"));
        assertEquals(2, bad.exitCode(), bad.err());
        assertTrue(bad.lastErrLine().contains("--stage-batch must be 0 (never) or at least 2, got -1"), bad.err());
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    @Test
    void generatedFileByteTotalsMatchItsTensors(@TempDir Path dir) throws IOException {
        Path file = TestModels.tinyMoe(dir);
        long tensorBytes;
        try (GgufFile f = GgufFile.open(file)) {
            tensorBytes = f.tensors().stream().mapToLong(GgufTensor::byteSize).sum();
        }
        JsonNode j = json("plan", "-m", file.toString(), "--gpu", "1G", "--ram", "1G", "--ctx", "256", "--kv", "q8_0",
                "--no-repack", "--json");
        assertTrue(j.get("fits").asBoolean());
        assertEquals(tensorBytes, j.get("model").get("weights_bytes").asLong());
        assertEquals(tensorBytes, sum(j.get("devices"), "weights_bytes"));
        // tiny: 2 layers, 2 KV heads of 64 -> 128 values, q8_0 34 bytes per 32
        assertEquals(2L * 2 * 256 * 128 / 32 * 34, sum(j.get("devices"), "kv_bytes"));
        assertEquals(256, j.get("context").asInt());
        assertEquals("q8_0", j.get("kv_type").asText());

        CliRunner text = CliRunner.run("plan", "-m", file.toString(), "--ram", "1G");
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("tiny-moe.gguf"), text.out());
    }

    @ParameterizedTest
    @ValueSource(strings = {"--ram=24", "--ram=24X", "--margin=lots", "--gpu=24", "--gpu=rtx9999", "--kv=q4",
            "--model=qwen3-9b:Q4_K_M", "--model=qwen3-30b-a3b:Q9", "--split=1,1", "--ram-type=sdram",
            "-ot=exps=cuda:3", "-ot=[=cpu", "--ctx=0"})
    void badUsageIsExit2WithOneLine(String bad) {
        String[] base = bad.startsWith("--model=") ? new String[] {"plan", bad, "--gpu", "24G"}
                : new String[] {"plan", "-m", "qwen3-30b-a3b:Q4_K_M", "--gpu", "24G", bad};
        CliRunner r = CliRunner.run(base);
        assertEquals(2, r.exitCode(), bad + ": " + r.err());
        assertEquals(1, r.errorLineCount(), r.err());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(r.lastErrLine().startsWith("moe4j: error: "), r.err());
    }

    @Test
    void aMissingFileIsExit1() {
        CliRunner r = CliRunner.run("plan", "-m", "/nonexistent/model.gguf");
        assertEquals(1, r.exitCode(), r.err());
        assertTrue(r.lastErrLine().contains("file not found"), r.err());
    }
}
