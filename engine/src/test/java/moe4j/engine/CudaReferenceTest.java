package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.Fixtures;
import moe4j.kernels.cuda.GpuTests;

/**
 * The bar of {@link LlamaCppReferenceTest} on the GPU: every fixture model's logits on {@code cuda:0},
 * through the batched prompt path and the one-token decode path, against llama.cpp's (same bounds as
 * the CPU engine) and against the CPU backend's, and the two GPU paths against each other.
 */
@Tag(GpuTests.TAG)
class CudaReferenceTest {

    private static final List<String> TABLE = Collections.synchronizedList(new ArrayList<>());

    @BeforeEach
    void requireGpu() {
        GpuTests.assumeCuda();
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("moe4j.engine.LlamaCppReferenceTest#cases")
    void matchesLlamaCppAndTheCpuBackend(String model, String prompt) throws IOException {
        Path modelFile = Fixtures.model(model + ".gguf");
        Path refFile = Fixtures.fixturesDir().resolve("reference").resolve(model + "." + prompt + ".bin");
        assumeTrue(Files.isRegularFile(refFile), "reference " + refFile + " not found: skipping");
        ReferenceLogits ref = ReferenceLogits.read(refFile);
        int[] tokens = ref.tokens();

        float[][] batched;
        float[][] oneByOne = new float[tokens.length][];
        try (Model m = Model.load(modelFile, LoadOptions.defaults().withDevice(Device.cuda(0)))) {
            assertTrue(m.backendDescription().startsWith("cuda:0"), m.backendDescription());
            assertEquals(ref.dim(), m.config().vocab(), "reference dimension vs model vocabulary");
            try (Session s = m.newSession()) {
                batched = s.evaluateAll(tokens);
            }
            try (Session s = m.newSession()) {
                for (int i = 0; i < tokens.length; i++) {
                    oneByOne[i] = s.evaluate(new int[] {tokens[i]});
                }
            }
        }
        float[][] cpu;
        try (Model m = Model.load(modelFile, LoadOptions.defaults().withThreads(2));
             Session s = m.newSession()) {
            cpu = s.evaluateAll(tokens);
        }

        LogitStats b = LogitStats.compare(ref.logits(), batched);
        LogitStats d = LogitStats.compare(ref.logits(), oneByOne);
        LogitStats vsCpu = LogitStats.compare(cpu, batched);
        LogitStats paths = LogitStats.compare(batched, oneByOne);
        double range = LlamaCppReferenceTest.maxAbs(cpu);
        TABLE.add(String.format("%-24s %-3s %9.2e %6.3f | %9.2e %6.3f | %9.2e %6.3f %8.2e | %8.2e", model, prompt,
                b.meanKl(), b.top1(), d.meanKl(), d.top1(), vsCpu.meanKl(), vsCpu.top1(), vsCpu.maxAbsDiff() / range,
                paths.maxAbsDiff() / range));

        boolean floatModel = LlamaCppReferenceTest.isFloatModel(model);
        double klBar = floatModel ? 1e-3 : 0.05;
        double top1Bar = floatModel ? 0.97 : 0.85;
        for (var e : List.of(Map.entry("batched", b), Map.entry("one-by-one", d))) {
            LogitStats st = e.getValue();
            assertTrue(st.meanKl() <= klBar, model + " " + prompt + " " + e.getKey() + " vs llama.cpp: mean KL "
                    + st.meanKl() + " > " + klBar);
            assertTrue(st.top1() >= top1Bar, model + " " + prompt + " " + e.getKey() + " vs llama.cpp: top-1 "
                    + st.top1() + " < " + top1Bar);
        }
        if (floatModel) {
            // as in LlamaCppReferenceTest: the tied fixtures' softmax is nearly one-hot, so compare the logits too
            double rel = b.maxAbsDiff() / LlamaCppReferenceTest.maxAbs(ref.logits());
            assertTrue(rel <= 2e-3, model + " " + prompt + ": max logit difference from llama.cpp is " + rel
                    + " of the logit range");
        }
        // the CPU backend rounds matrix-product activations as llama.cpp does; the GPU rounds them so for Q3_K to
        // Q6_K weights and keeps float32 for the others: the two may differ by as much as either differs from
        // llama.cpp, no more
        assertTrue(vsCpu.meanKl() <= klBar, model + " " + prompt + " GPU vs CPU: mean KL " + vsCpu.meanKl());
        assertTrue(vsCpu.top1() >= top1Bar, model + " " + prompt + " GPU vs CPU: top-1 " + vsCpu.top1());
        if (model.endsWith("-F32")) {
            // nothing is rounded on either side: float32 summation order only
            double rel = vsCpu.maxAbsDiff() / range;
            assertTrue(rel <= 1e-3, model + " " + prompt + ": GPU vs CPU max logit difference is " + rel
                    + " of the logit range");
        }
        double pathsKlBar = LlamaCppReferenceTest.gpuPathsKlBar(model);
        double pathsTop1Bar = LlamaCppReferenceTest.gpuPathsTop1Bar(model);
        assertTrue(paths.meanKl() <= pathsKlBar, model + " " + prompt + " GPU batched vs one-by-one: mean KL "
                + paths.meanKl());
        assertTrue(paths.top1() >= pathsTop1Bar, model + " " + prompt + " GPU batched vs one-by-one: top-1 "
                + paths.top1());
    }

    @AfterAll
    static void printTable() {
        if (TABLE.isEmpty()) {
            return;
        }
        StringBuilder sb = new StringBuilder("\nGPU (cuda:0) agreement\n");
        sb.append(String.format("%-28s %-16s | %-16s | %-26s | %s%n", "", "batched vs llama", "1-by-1 vs llama",
                "batched vs CPU backend", "batched vs 1-by-1"));
        sb.append(String.format("%-24s %-3s %9s %6s | %9s %6s | %9s %6s %8s | %8s%n", "model", "p", "KL mean", "top1",
                "KL mean", "top1", "KL mean", "top1", "rel dlog", "rel dlog"));
        List<String> rows = new ArrayList<>(TABLE);
        Collections.sort(rows);
        rows.forEach(r -> sb.append(r).append('\n'));
        System.out.println(sb);
    }
}
