package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.Arrays;
import java.util.Random;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import moe4j.kernels.cuda.GpuTests;

/**
 * The GPU against the CPU backend on the real shapes of Qwen3-30B-A3B and Qwen3-235B-A22B (a layer or two, random
 * weights as {@code make-test-model} writes them): the fixtures run the same kernels with rows of 256 values, grids
 * of a few blocks and 4 experts; here rows of 2048 and 4096 values, grids of thousands of blocks walking their rows,
 * 128 experts grouped for a 40-token prompt, through the batched path and the recorded one-token path, with
 * {@link CudaReferenceTest}'s bounds for quantized models (one miss allowed among the six one-token positions).
 */
@Tag(GpuTests.TAG)
class CudaFullShapeTest {

    private static final int TOKENS = 40;
    private static final int ONE_BY_ONE = 6;

    @BeforeEach
    void requireGpu() {
        GpuTests.assumeCuda();
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen3-30b-a3b:Q4_K_M/2", "qwen3-235b-a22b:Q3_K_M/1"})
    void logitsMatchTheCpuBackend(String spec) throws IOException {
        String model = "synthetic:" + spec;
        LoadOptions options = LoadOptions.defaults().withBatchSize(TOKENS).withContextLength(TOKENS + 8);
        float[][] cpu;
        int[] tokens;
        try (Model m = BenchModels.load(model, options); Session session = m.newSession()) {
            tokens = new Random(7).ints(TOKENS, 0, m.config().vocab()).toArray();
            cpu = session.evaluateAll(tokens);
        }
        float[][] batched;
        float[][] oneByOne = new float[ONE_BY_ONE][];
        try (Model m = BenchModels.load(model, options.withDevice(Device.cuda(0)))) {
            assertTrue(m.backendDescription().startsWith("cuda:0"), m.backendDescription());
            try (Session session = m.newSession()) {
                batched = session.evaluateAll(tokens);
            }
            try (Session session = m.newSession()) {
                for (int i = 0; i < ONE_BY_ONE; i++) {
                    oneByOne[i] = session.evaluate(new int[] {tokens[i]});
                }
            }
        }
        LogitStats vsCpu = LogitStats.compare(cpu, batched);
        LogitStats steps = LogitStats.compare(Arrays.copyOf(cpu, ONE_BY_ONE), oneByOne);
        System.out.printf("%s GPU vs CPU: batched mean KL %.2e top-1 %.3f, one-by-one mean KL %.2e top-1 %.3f%n", spec,
                vsCpu.meanKl(), vsCpu.top1(), steps.meanKl(), steps.top1());
        assertTrue(vsCpu.meanKl() <= 0.05, spec + " GPU vs CPU, batched: mean KL " + vsCpu.meanKl());
        assertTrue(vsCpu.top1() >= 0.85, spec + " GPU vs CPU, batched: top-1 " + vsCpu.top1());
        assertTrue(steps.meanKl() <= 0.05, spec + " GPU vs CPU, one token at a time: mean KL " + steps.meanKl());
        // six positions: one may differ (a bar of 0.85 would allow none)
        assertTrue(steps.top1() >= 5.0 / 6, spec + " GPU vs CPU, one token at a time: top-1 " + steps.top1());
    }
}
