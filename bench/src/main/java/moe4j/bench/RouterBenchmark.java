package moe4j.bench;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import moe4j.kernels.Activations;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cpu.JitOptions;

/**
 * Mixture-of-experts routing through the CPU backend: softmax over 128 experts and the top 8 of each of
 * {@code tokens} random logit rows ({@code routeSoftmaxTopK}, Qwen3-30B-A3B's router), on {@code threads}
 * worker threads; {@code routeAndGroup} adds the sort of assignments by expert that the expert product
 * needs. The {@code tokensRouted} secondary result is tokens per second.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class RouterBenchmark {

    static final int EXPERTS = 128;
    static final int USED = 8;

    @Param({"1", "512"})
    public int tokens;

    @Param({"1"})
    public int threads;

    private CpuBackend cpu;
    private Activations logits;
    private ExpertRouting routing;

    /** Tokens routed per second, reported as a secondary result. */
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Work {
        public long tokensRouted;
    }

    @Setup(Level.Trial)
    public void setUp() {
        cpu = new CpuBackend(threads);
        logits = cpu.allocate(tokens, EXPERTS);
        routing = cpu.allocateRouting(EXPERTS, USED, tokens);
        SplittableRandom rnd = new SplittableRandom(4);
        float[] row = new float[EXPERTS];
        for (int t = 0; t < tokens; t++) {
            for (int e = 0; e < EXPERTS; e++) {
                row[e] = (float) rnd.nextGaussian() * 2f;
            }
            cpu.write(row, 0, logits, t);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        routing.close();
        cpu.close();
    }

    @Benchmark
    public ExpertRouting route(Work work) {
        cpu.routeSoftmaxTopK(logits, tokens, routing);
        work.tokensRouted += tokens;
        return routing;
    }

    @Benchmark
    public ExpertRouting routeAndGroup(Work work) {
        cpu.routeSoftmaxTopK(logits, tokens, routing);
        routing.group(tokens);
        work.tokensRouted += tokens;
        return routing;
    }
}
