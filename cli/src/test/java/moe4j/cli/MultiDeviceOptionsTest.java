package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --devices}, {@code --split}, {@code --cpu-moe}, {@code -ot}: placements across two CPU backends. */
class MultiDeviceOptionsTest {

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    private static CliRunner generate(String... extra) {
        String[] base = {"generate", "-m", model.toString(), "-p", "The quick brown fox", "-n", "8", "--temp", "0",
                "-t", "2"};
        String[] args = Arrays.copyOf(base, base.length + extra.length);
        System.arraycopy(extra, 0, args, base.length, extra.length);
        return CliRunner.run(args);
    }

    @Test
    void generateAcrossTwoCpuBackendsPrintsThePlacementAndTheSameText() {
        CliRunner single = generate();
        assertEquals(0, single.exitCode(), single.err());
        assertTrue(!single.err().contains("placement:"), "one device: no placement table\n" + single.err());

        CliRunner split = generate("--devices", "cpu,cpu", "--split", "1,1");
        assertEquals(0, split.exitCode(), split.err());
        assertEquals(single.out(), split.out(), "greedy text on cpu,cpu vs cpu");
        String err = split.err();
        assertTrue(err.contains("placement:"), err);
        assertTrue(err.contains("cpu (2 threads) + cpu:1 = cpu (2 threads)"), err);
        String[] lines = err.split("\\R");
        int header = Arrays.asList(lines).indexOf(Arrays.stream(lines).filter(l -> l.startsWith("device ")).findFirst()
                .orElseThrow(() -> new AssertionError("no table header in\n" + err)));
        // columns: device, weights, KV cache, scratch, free, attention layers, expert layers, globals
        // the devices besides the CPU first, as the planner lists them
        String[] cpu1 = lines[header + 1].split(" {2,}");
        String[] cpu = lines[header + 2].split(" {2,}");
        assertEquals(Arrays.asList("cpu:1", "1", "1", "output_norm.weight, output.weight"),
                Arrays.asList(cpu1[0], cpu1[5], cpu1[6], cpu1[7]), lines[header + 1]);
        assertEquals(Arrays.asList("cpu", "0", "0", "token_embd.weight"),
                Arrays.asList(cpu[0], cpu[5], cpu[6], cpu[7]), lines[header + 2]);

        CliRunner cpuMoe = generate("--devices", "cpu,cpu", "--cpu-moe");
        assertEquals(0, cpuMoe.exitCode(), cpuMoe.err());
        assertEquals(single.out(), cpuMoe.out(), "greedy text with the experts on another CPU backend");
    }

    @Test
    void anImpossiblePlacementFailsWithThePlannersMessage() {
        CliRunner r = generate("--devices", "cpu,cpu", "-ot", "exps=cuda:3");
        assertEquals(1, r.exitCode(), r.err());
        assertEquals(1, r.errorLineCount(), r.err());
        assertTrue(r.lastErrLine().contains("names device cuda:3, which is not one of: cpu, cpu:1"), r.err());

        // the FFN norm runs with the experts (on cpu), so it cannot be pinned to cpu:1 alone
        CliRunner split = generate("--devices", "cpu,cpu", "--cpu-moe", "-ot", "ffn_norm=cpu:1");
        assertEquals(1, split.exitCode(), split.err());
        assertEquals(1, split.errorLineCount(), split.err());
        assertTrue(split.lastErrLine().contains("Layer 0's feed-forward block runs on one device, but"
                + " blk.0.ffn_norm.weight would be on cpu:1 (tensor override 'ffn_norm=cpu:1')"), split.err());
    }

    @Test
    void badPlacementFlagsAreUsageErrors() {
        CliRunner both = generate("--device", "cpu", "--devices", "cpu,cpu");
        assertEquals(2, both.exitCode(), both.err());
        assertTrue(both.lastErrLine().contains("--device and --devices exclude each other"), both.err());
        CliRunner moe = generate("--cpu-moe", "--n-cpu-moe", "1");
        assertEquals(2, moe.exitCode(), moe.err());
        assertTrue(moe.lastErrLine().contains("--cpu-moe and --n-cpu-moe exclude each other"), moe.err());
        CliRunner ot = generate("-ot", "exps");
        assertEquals(2, ot.exitCode(), ot.err());
        assertTrue(ot.lastErrLine().contains("expected REGEX=DEVICE"), ot.err());
    }
}
