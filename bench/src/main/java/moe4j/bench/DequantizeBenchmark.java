package moe4j.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;

import moe4j.gguf.GgmlType;
import moe4j.kernels.cpu.JitOptions;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Dequantization throughput per tensor type, in elements per second: 2^20 elements of random
 * blocks held off-heap (as in a mapped model), decoded row by row into one reused row buffer.
 * Source bytes per second = score * bits per weight / 8.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class DequantizeBenchmark {

    private static final int ELEMENTS = 1 << 20;
    private static final int ROW = 4096;

    @Param({"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
            "IQ4_NL", "IQ4_XS"})
    public String type;

    private Arena arena;
    private MemorySegment data;
    private QuantFormat format;
    private long rowBytes;
    private final float[] row = new float[ROW];

    @Setup(Level.Trial)
    public void setUp() {
        GgmlType t = GgmlType.valueOf(type);
        format = QuantFormats.of(t);
        arena = Arena.ofShared();
        data = arena.allocate(t.bytesFor(ELEMENTS), 64);
        format.randomBlocks(new SplittableRandom(1), data, 0, ELEMENTS / t.blockSize());
        rowBytes = t.bytesFor(ROW);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    @OperationsPerInvocation(ELEMENTS)
    public void dequantize(Blackhole bh) {
        for (int r = 0; r < ELEMENTS / ROW; r++) {
            format.dequantize(data, r * rowBytes, row, 0, ROW);
            bh.consume(row);
        }
    }
}
