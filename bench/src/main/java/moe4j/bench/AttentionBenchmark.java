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
import moe4j.kernels.AttentionShape;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cpu.JitOptions;

/**
 * Decode attention through the CPU backend: one query token over a cache of {@code positions} positions
 * (32 query heads of 128, 4 key/value heads: Qwen3-30B-A3B's shape), one layer, on {@code threads} worker
 * threads. The cache is filled with random keys and values through {@code storeKv}.
 *
 * <p>The {@code cacheBytes} secondary result counts the key and value bytes one call reads
 * ({@code 2 * positions * kvDim * bytesPerValue}), so its ops/s figure is the cache read bandwidth in bytes per
 * second.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class AttentionBenchmark {

    static final AttentionShape SHAPE = new AttentionShape(32, 4, 128, (float) (1 / Math.sqrt(128)));

    @Param({"512", "4096"})
    public int positions;

    @Param({"F16"})
    public String cacheType;

    @Param({"1", "2"})
    public int threads;

    private CpuBackend cpu;
    private KvCache cache;
    private Activations query;
    private Activations out;
    private long bytesPerCall;

    /** Cache bytes read per second, reported as a secondary result. */
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Traffic {
        public long cacheBytes;
    }

    @Setup(Level.Trial)
    public void setUp() {
        KvCacheType kvType = KvCacheType.parse(cacheType);
        int kvDim = SHAPE.kvDim();
        cpu = new CpuBackend(threads);
        cache = cpu.allocateKvCache(1, positions, SHAPE.kvHeads(), SHAPE.headDim(), kvType);
        SplittableRandom rnd = new SplittableRandom(3);
        Activations keys = cpu.allocate(positions, kvDim);
        Activations values = cpu.allocate(positions, kvDim);
        float[] row = new float[kvDim];
        for (int p = 0; p < positions; p++) {
            fill(rnd, row);
            cpu.write(row, 0, keys, p);
            fill(rnd, row);
            cpu.write(row, 0, values, p);
        }
        cpu.storeKv(cache, 0, keys, values, 0, positions);
        query = cpu.allocate(1, SHAPE.qDim());
        float[] q = new float[SHAPE.qDim()];
        fill(rnd, q);
        cpu.write(q, 0, query, 0);
        out = cpu.allocate(1, SHAPE.qDim());
        bytesPerCall = Math.round(2.0 * positions * kvDim * kvType.bytesPerValue());
    }

    private static void fill(SplittableRandom rnd, float[] v) {
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        cache.close();
        cpu.close();
    }

    @Benchmark
    public Activations decodeToken(Traffic traffic) {
        cpu.attention(query, cache, 0, SHAPE, positions - 1, 1, out);
        traffic.cacheBytes += bytesPerCall;
        return out;
    }
}
