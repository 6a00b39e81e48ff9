package moe4j.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

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

import moe4j.gguf.HugePages;
import moe4j.kernels.cpu.JitOptions;

/**
 * The machine's practical read bandwidth: the sum of a 256 MiB off-heap segment ({@code -p mib=N}) with vector loads,
 * on one thread, two, and every processor ({@code allThreads}, the slices handed out by the CPU backend's pool). The
 * {@code weightBytes} secondary result is bytes read per second, the ceiling for {@link MatVecBenchmark}'s figure of
 * the same name.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class StreamingReadBenchmark {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Bytes a slice of {@link #allThreads}: many more slices than threads, so that none waits on a slow one. */
    private static final long SLICE = 1L << 20;

    /** MiB summed: larger than the last-level cache of the machine measured. */
    @Param({"256"})
    public int mib;

    /** 2 MiB pages, as {@link MatVecBenchmark}'s weights by default; {@code -p hugePages=false} for 4 KiB pages. */
    @Param({"true"})
    public boolean hugePages;

    private long bytes;
    private Arena arena;
    private MemorySegment data;
    private ExecutorService helper;
    private float[] sliceSums;

    @Setup(Level.Trial)
    public void setUp() {
        if (mib < 1) {
            throw new IllegalArgumentException("mib must be at least 1, not " + mib);
        }
        bytes = (long) mib << 20;
        arena = Arena.ofShared();
        data = hugePages ? HugePages.allocateOrPlain(bytes, arena) : arena.allocate(bytes, 64);
        data.fill((byte) 1);
        helper = Executors.newSingleThreadExecutor();
        sliceSums = new float[Math.toIntExact(bytes / SLICE)];
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        helper.shutdownNow();
        arena.close();
    }

    /** Four independent accumulators so the adds never limit the loads. */
    private float sum(long from, long to) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        long step = F.vectorByteSize();
        for (long o = from; o < to; o += 4 * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, data, o, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(FloatVector.fromMemorySegment(F, data, o + step, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(FloatVector.fromMemorySegment(F, data, o + 2 * step, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(FloatVector.fromMemorySegment(F, data, o + 3 * step, ByteOrder.LITTLE_ENDIAN));
        }
        return a0.add(a1).add(a2.add(a3)).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }

    @Benchmark
    public float oneThread(MatVecBenchmark.Traffic traffic) {
        traffic.weightBytes += bytes;
        return sum(0, bytes);
    }

    @Benchmark
    public float twoThreads(MatVecBenchmark.Traffic traffic) throws InterruptedException, ExecutionException {
        Future<Float> other = helper.submit(() -> sum(bytes / 2, bytes));
        float mine = sum(0, bytes / 2);
        traffic.weightBytes += bytes;
        return mine + other.get();
    }

    @Benchmark
    public float[] allThreads(MatVecBenchmark.Traffic traffic, MatVecBenchmark.AllCores all) {
        all.pool.parallelFor(sliceSums.length, 1, (from, to, worker) -> {
            for (int i = from; i < to; i++) {
                sliceSums[i] = sum(i * SLICE, (i + 1) * SLICE);
            }
        });
        traffic.weightBytes += bytes;
        return sliceSums;
    }
}
