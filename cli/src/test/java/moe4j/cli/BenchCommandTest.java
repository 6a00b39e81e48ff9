package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.kernels.cuda.CudaDevices;
import moe4j.kernels.quant.QuantFormats;

class BenchCommandTest {

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    @Test
    void printsOneTableRowPerTestWithMeanAndDeviation() {
        CliRunner r = CliRunner.run("bench", "-m", model.toString(), "-p", "16", "-n", "8", "-r", "2", "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        List<String> rows = r.out().lines().filter(l -> l.startsWith("| tiny-moe.gguf")).toList();
        assertEquals(2, rows.size(), r.out());
        assertTrue(rows.get(0).matches(".*\\|\\s+2 \\|\\s+pp16 \\|\\s+\\d+\\.\\d\\d ± \\d+\\.\\d\\d \\|"), rows.get(0));
        assertTrue(rows.get(1).matches(".*\\|\\s+2 \\|\\s+tg8 \\|\\s+\\d+\\.\\d\\d ± \\d+\\.\\d\\d \\|"), rows.get(1));
        assertTrue(r.out().lines().findFirst().orElse("").contains("t/s"), r.out());
        // and on stderr, after the runs, in what pages the weights were read
        assertTrue(r.err().matches("(?s).*weights: mapped(, (2 MiB|4 KiB) pages)?\\R.*"), r.err());
    }

    @Test
    void jsonHasLlamaBenchFieldsAndZeroSkipsATest() throws IOException {
        CliRunner r = CliRunner.run("bench", "-m", model.toString(), "-p", "0", "-n", "4", "-r", "3", "-t", "1", "--json");
        assertEquals(0, r.exitCode(), r.err());
        List<Map<String, Object>> results = new ObjectMapper().readValue(r.out(), new TypeReference<>() {});
        assertEquals(1, results.size(), r.out());
        Map<String, Object> tg = results.getFirst();
        assertEquals("tg4", tg.get("test"));
        assertEquals(0, tg.get("n_prompt"));
        assertEquals(4, tg.get("n_gen"));
        assertEquals(1, tg.get("threads"));
        assertTrue(tg.get("cpu_info") instanceof String, r.out());
        assertEquals(QuantFormats.vectorBits(), tg.get("vector_bits"));
        List<?> samples = (List<?>) tg.get("samples_ts");
        assertEquals(3, samples.size());
        double avg = ((Number) tg.get("avg_ts")).doubleValue();
        double mean = samples.stream().mapToDouble(s -> ((Number) s).doubleValue()).average().orElseThrow();
        assertEquals(mean, avg, 1e-9 * mean);
        assertTrue(avg > 0 && ((Number) tg.get("stddev_ts")).doubleValue() >= 0, r.out());
        // HotSpot counts every thread's allocations
        assertTrue(((Number) tg.get("heap_bytes_per_token")).doubleValue() >= 0, r.out());
    }

    @Test
    void heapLineNamesEachTestAndWarnsOnlyWhereGenerationAllocatesLikeABoxedKernel() {
        BenchCommand.Result pp = new BenchCommand.Result("pp16", 16, 0, 0, 2, new double[] {1}, 200 * 1024);
        BenchCommand.Result tg = new BenchCommand.Result("tg8", 0, 8, 0, 2, new double[] {1}, 30 * 1024);
        String healthy = BenchCommand.heapNote(List.of(pp, tg)).orElseThrow();
        assertEquals("heap allocated per token: pp16 200.00 KiB, tg8 30.00 KiB", healthy);
        BenchCommand.Result boxed = new BenchCommand.Result("tg8", 0, 8, 0, 2, new double[] {1}, 457.0 * 1024 * 1024);
        String warned = BenchCommand.heapNote(List.of(pp, boxed)).orElseThrow();
        assertTrue(warned.lines().skip(1).findFirst().orElse("").startsWith("note: generation allocated 457.00 MiB a token"),
                warned);
        // the note speaks of generation only, and an unknown figure is not shown
        BenchCommand.Result bigPrompt = new BenchCommand.Result("pp16", 16, 0, 0, 2, new double[] {1}, 457.0 * 1024 * 1024);
        assertEquals(1, BenchCommand.heapNote(List.of(bigPrompt)).orElseThrow().lines().count());
        BenchCommand.Result unknown = new BenchCommand.Result("tg8", 0, 8, 0, 2, new double[] {1}, -1);
        assertTrue(BenchCommand.heapNote(List.of(unknown)).isEmpty());
    }

    @Test
    void depthStartsEachRunFromAFilledContextAndNamesTheTest() throws IOException {
        CliRunner r = CliRunner.run("bench", "-m", model.toString(), "-p", "8", "-n", "4", "-d", "24", "-r", "1", "-t", "2",
                "--json");
        assertEquals(0, r.exitCode(), r.err());
        List<Map<String, Object>> results = new ObjectMapper().readValue(r.out(), new TypeReference<>() {});
        assertEquals(List.of("pp8 @ d24", "tg4 @ d24"), results.stream().map(m -> m.get("test")).toList());
        assertEquals(List.of(24, 24), results.stream().map(m -> m.get("n_depth")).toList());
        CliRunner table = CliRunner.run("bench", "-m", model.toString(), "-p", "0", "-n", "4", "-d", "24", "-r", "1");
        assertTrue(table.out().lines().anyMatch(l -> l.matches(".*\\|\\s+tg4 @ d24 \\|.*")), table.out());
        assertEquals(Main.EXIT_USAGE, CliRunner.run("bench", "-m", model.toString(), "-d", "-1").exitCode());
    }

    @Test
    void benchesASyntheticModelBuiltInMemory() {
        CliRunner r = CliRunner.run("bench", "--synthetic", "tiny:Q8_0", "--layers", "1", "-p", "8", "-n", "4", "-r", "1",
                "-t", "1");
        assertEquals(0, r.exitCode(), r.err());
        List<String> rows = r.out().lines().filter(l -> l.startsWith("| synthetic-tiny-Q8_0-1L ")).toList();
        assertEquals(2, rows.size(), r.out());
        assertTrue(rows.get(0).contains("pp8") && rows.get(1).contains("tg4"), r.out());
        assertTrue(r.err().contains("weights: in memory"), r.err());
    }

    @Test
    void rejectsABadSyntheticModelInOneLine() {
        for (String[] args : List.of(new String[] {"--synthetic", "qwen9"}, new String[] {"--synthetic", "tiny:Q9_K"},
                new String[] {"--synthetic", "tiny", "-m", model.toString()}, new String[] {"--layers", "2"},
                new String[] {"--synthetic", "tiny", "--layers", "0"})) {
            CliRunner r = CliRunner.run(concat(args, "-p", "4", "-n", "0"));
            assertEquals(Main.EXIT_USAGE, r.exitCode(), String.join(" ", args) + ": " + r.err());
            assertEquals(1, r.err().lines().filter(l -> l.startsWith("moe4j: error:")).count(), r.err());
        }
        CliRunner tooLarge = CliRunner.run("bench", "--synthetic", "qwen3-235b-a22b:F32", "-p", "4", "-n", "0");
        assertEquals(Main.EXIT_FAILURE, tooLarge.exitCode(), tooLarge.err());
        assertTrue(tooLarge.err().contains("synthetic-qwen3-235b-a22b-F32 needs"), tooLarge.err());
    }

    @Test
    void aGpuThatCannotBeUsedFailsBeforeTheSyntheticModelIsBuilt() {
        assumeTrue(CudaDevices.unavailableReason().isPresent(), "a usable GPU here: nothing to refuse");
        // a model too large for this machine: built first, it would fail on its size instead
        for (String device : List.of("--device=cuda:0", "--devices=cuda:0,cpu")) {
            CliRunner r = CliRunner.run("bench", "--synthetic", "qwen3-235b-a22b:F32", device, "-p", "4", "-n", "0");
            assertEquals(Main.EXIT_FAILURE, r.exitCode(), r.err());
            assertEquals(1, r.err().lines().filter(l -> l.startsWith("moe4j: error: CUDA is not available")).count(),
                    r.err());
        }
    }

    private static String[] concat(String[] args, String... more) {
        String[] all = new String[args.length + more.length + 1];
        all[0] = "bench";
        System.arraycopy(args, 0, all, 1, args.length);
        System.arraycopy(more, 0, all, 1 + args.length, more.length);
        return all;
    }

    @Test
    void rejectsNothingToMeasureAndBadCounts() {
        assertEquals(Main.EXIT_USAGE, CliRunner.run("bench", "-m", model.toString(), "-p", "0", "-n", "0").exitCode());
        assertEquals(Main.EXIT_USAGE, CliRunner.run("bench", "-m", model.toString(), "-r", "0").exitCode());
        assertEquals(Main.EXIT_USAGE, CliRunner.run("bench", "-m", model.toString(), "-n", "-1").exitCode());
        assertEquals(Main.EXIT_USAGE, CliRunner.run("bench", "-p", "8").exitCode());
    }
}
