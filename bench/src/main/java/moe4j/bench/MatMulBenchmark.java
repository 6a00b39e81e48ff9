package moe4j.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
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

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.Weight;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cpu.JitOptions;
import moe4j.kernels.quant.QuantFormats;

/**
 * Prompt-batch matrix products through the CPU backend's public API ({@code bind}, {@code allocate},
 * {@code matmul}): a 768 x 2048 matrix of random blocks (the shape of a Qwen3-30B-A3B expert's gate and up
 * projections, small enough to stay in cache, so the figure measures arithmetic, not memory) times a batch of
 * {@code tokens} activation rows, on {@code threads} worker threads. Each call includes what the backend does
 * per product: rounding the activations for the weight type, then the tiled {@code dotPreparedRows}.
 *
 * <p>The {@code flops} secondary result counts {@code 2 * rows * columns * tokens} per product, so its ops/s
 * figure is FLOP/s (divide by 1e9 for GFLOP/s).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class MatMulBenchmark {

    static final int ROWS = 768;
    static final int COLUMNS = 2048;

    @Param({"Q4_K", "Q6_K", "Q3_K", "Q5_K", "Q8_0", "F16", "BF16", "F32"})
    public String type;

    @Param({"32", "64"})
    public int tokens;

    @Param({"1", "2"})
    public int threads;

    /**
     * Whether the backend repacks Q4_K, Q5_K and Q6_K matrices when it binds them, as it does by default on 512-bit machines
     * ({@code false}: the file's layout, as with {@code --no-repack} or where the copy does not fit in RAM).
     */
    @Param({"true"})
    public boolean repacked;

    private Arena arena;
    private CpuBackend cpu;
    private Weight weight;
    private Activations x;
    private Activations out;

    /** Floating-point operations per second, reported as a secondary result. */
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Work {
        public long flops;
    }

    @Setup(Level.Trial)
    public void setUp() {
        GgmlType t = GgmlType.valueOf(type);
        long bytes = ROWS * t.bytesFor(COLUMNS);
        arena = Arena.ofShared();
        MemorySegment data = arena.allocate(bytes, 64);
        QuantFormats.of(t).randomBlocks(new SplittableRandom(1), data, 0, bytes / t.blockBytes());
        GgufTensor tensor = new GgufTensor("bench.weight", t, new long[] {COLUMNS, ROWS, 1, 1}, 2,
                Path.of("bench.gguf"), 0, data);
        cpu = new CpuBackend(threads, repacked);
        weight = cpu.bind(tensor);
        x = cpu.allocate(tokens, COLUMNS);
        out = cpu.allocate(tokens, ROWS);
        SplittableRandom rnd = new SplittableRandom(2);
        float[] row = new float[COLUMNS];
        for (int token = 0; token < tokens; token++) {
            for (int i = 0; i < COLUMNS; i++) {
                row[i] = (float) rnd.nextGaussian();
            }
            cpu.write(row, 0, x, token);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        cpu.close();
        arena.close();
    }

    @Benchmark
    public Activations matmul(Work work) {
        cpu.matmul(weight, x, out, tokens);
        work.flops += 2L * ROWS * COLUMNS * tokens;
        return out;
    }
}
