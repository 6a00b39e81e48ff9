package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;

class MakeTestModelCommandTest {

    @TempDir
    Path dir;

    @Test
    void writesTheRequestedShapeAndMix() throws IOException {
        Path out = dir.resolve("m.gguf");
        CliRunner r = CliRunner.run("make-test-model", "-o", out.toString(), "--type", "q4_k_m", "--layers", "3",
                "--experts", "8", "--experts-used", "2", "--vocab", "400", "--seed", "5");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().startsWith("wrote " + out + ": "), r.out());
        assertTrue(r.out().contains("(" + Files.size(out) + " bytes)"), r.out());
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals("qwen3moe", f.metadata().getString("general.architecture"));
            assertEquals(3, f.metadata().getInt("qwen3moe.block_count"));
            assertEquals(8, f.metadata().getInt("qwen3moe.expert_count"));
            assertEquals(256, f.metadata().getInt("qwen3moe.embedding_length"));
            assertEquals(400, f.metadata().arrayLength("tokenizer.ggml.tokens"));
            assertEquals(15, f.metadata().getInt("general.file_type"));
            assertEquals(GgmlType.Q6_K, f.tensor("output.weight").type());
            assertEquals(8, f.tensor("blk.2.ffn_up_exps.weight").shape()[2]);
        }
    }

    @Test
    void archQwen3TurnsAnMoePresetDense() throws IOException {
        Path out = dir.resolve("d.gguf");
        CliRunner r = CliRunner.run("make-test-model", "-o", out.toString(), "--arch", "qwen3", "--preset", "tiny",
                "--type", "F16");
        assertEquals(0, r.exitCode(), r.err());
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals("qwen3", f.metadata().getString("general.architecture"));
            assertTrue(f.findTensor("blk.0.ffn_gate.weight").isPresent());
            assertTrue(f.findTensor("blk.0.ffn_gate_exps.weight").isEmpty());
            assertEquals(768, f.tensor("blk.0.ffn_gate.weight").shape()[1]);
        }
        Path dense = dir.resolve("dense.gguf");
        assertEquals(0, CliRunner.run("make-test-model", "-o", dense.toString(), "--arch", "qwen3").exitCode());
        try (GgufFile f = GgufFile.open(dense)) {
            assertTrue(f.findTensor("output.weight").isEmpty(), "tiny-dense has tied embeddings");
        }
    }

    @Test
    void invalidShapesAreUsageErrorsOnOneLine() {
        Path out = dir.resolve("x.gguf");
        CliRunner r = CliRunner.run("make-test-model", "-o", out.toString(), "--heads", "6", "--kv-heads", "4");
        assertEquals(2, r.exitCode());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(r.err().startsWith("moe4j: error: heads (6) must be a multiple of kvHeads (4)"), r.err());

        r = CliRunner.run("make-test-model", "-o", out.toString(), "--arch", "qwen3moe", "--preset", "qwen3-0.6b");
        assertEquals(2, r.exitCode());
        assertTrue(r.err().contains("--experts"), r.err());

        r = CliRunner.run("make-test-model", "-o", out.toString(), "--preset", "huge");
        assertEquals(2, r.exitCode());
        assertTrue(r.err().contains("unknown preset 'huge'"), r.err());

        r = CliRunner.run("make-test-model", "-o", out.toString(), "--type", "Q9_9");
        assertEquals(2, r.exitCode());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(Files.notExists(out));
    }

    @Test
    void missingOutputDirectoryFailsWithExitCode1() {
        CliRunner r = CliRunner.run("make-test-model", "-o", dir.resolve("no/such/dir/m.gguf").toString());
        assertEquals(1, r.exitCode());
        assertEquals(1, r.errLines().length, r.err());
        assertTrue(r.err().contains("does not exist"), r.err());
    }

    @Test
    void versionAndHelpSucceed() {
        CliRunner v = CliRunner.run("--version");
        assertEquals(0, v.exitCode());
        assertTrue(v.out().startsWith("moe4j "), v.out());
        CliRunner h = CliRunner.run("--help");
        assertEquals(0, h.exitCode());
        assertTrue(h.out().contains("info") && h.out().contains("make-test-model"), h.out());
        assertEquals(2, CliRunner.run("no-such-command").exitCode());
    }
}
