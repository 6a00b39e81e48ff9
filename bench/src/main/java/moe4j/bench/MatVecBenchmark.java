package moe4j.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
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
import moe4j.gguf.HugePages;
import moe4j.kernels.cpu.JitOptions;
import moe4j.kernels.cpu.WorkerPool;
import moe4j.kernels.quant.PreparedActivations;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Matrix-vector products over about 96 MiB of random weights (rows of {@code columns}, 4096 by default; larger
 * than the caches, so weights stream from memory as in decoding; {@code -p columns=768} gives the rows of a
 * Qwen3-30B-A3B expert's down projection; {@code -p kib=512} a matrix that stays in the core's cache, which tells a
 * kernel bound by its arithmetic from one bound by memory). {@code matVecOneThread} and {@code matVecTwoThreads}
 * (the rows split in halves) are what the CPU backend's decoding step runs: {@code dotPreparedRows} with one
 * token, 8 rows per call, through each type's row kernel. {@code oneThread} / {@code twoThreads} call the
 * float-activation {@code dot} per row; {@code batch8} applies each row to 8 activation vectors with
 * {@code dotBatch}; {@code preparedBatch8} does so with {@code dotPreparedRows}, the tiled path that the CPU
 * backend's prompt matmul runs.
 *
 * <p>The {@code prepared*} methods measure what the CPU backend runs: {@code dotPrepared} with activations
 * rounded as llama.cpp rounds them for the type (8-bit blocks for quantized types), where K-quants fold
 * their minimums out of the inner loop; the others measure the float-activation {@code dot}/{@code dotBatch}.
 *
 * <p>{@code matVecAllThreads} runs the same calls on every processor of the machine, handed out as the CPU backend's
 * pool hands out a product's rows: on a machine with many cores per memory channel (the GPU machine's host, 16 cores)
 * the kernels can be bound by memory there where two cores are bound by their arithmetic. Give it a matrix larger than
 * that machine's last-level cache ({@code -p kib=524288}) and compare with {@link StreamingReadBenchmark#allThreads}.
 *
 * <p>The {@code weightBytes} secondary result counts weight bytes read, so its ops/s figure is the
 * weight bandwidth in bytes per second; compare it with {@link StreamingReadBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        JitOptions.TRAP_LIMIT, JitOptions.RECOMPILATION_CUTOFF})
public class MatVecBenchmark {

    static final int BATCH = 8;
    private static final long PAGE = 4096;

    @Param({"Q4_K", "Q6_K", "Q3_K", "Q5_K", "Q8_0", "Q4_0", "Q2_K", "IQ4_XS", "F16", "BF16", "F32"})
    public String type;

    @Param({"4096"})
    public int columns;

    /** Weight bytes, in KiB. */
    @Param({"98304"})
    public int kib;

    /**
     * Rows per call of the one-token kernel: the CPU backend's work units hold at least 8 KiB of weights (24 rows of
     * Q4_K at 768 values, 8 rows at 2048 and more).
     */
    @Param({"8"})
    public int rowsPerCall;

    /**
     * Weights in 2 MiB pages, as the engine holds a model (mapped with huge-page advice, or read into memory with
     * {@code --no-mmap}); {@code -p hugePages=false} for 4 KiB pages, as a mapped file cached in small folios (where
     * transparent huge pages are set to {@code madvise}; with {@code always} Linux may give huge pages anyway).
     */
    @Param({"true"})
    public boolean hugePages;

    /**
     * Bytes from a 2 MiB boundary (huge pages) or a 4 KiB one (otherwise) to the first row. Where rows start modulo 256
     * bytes once changed how fast some kernels streamed by a factor of two (see bench/CPU-NOTES.md), so this tells
     * one from another.
     */
    @Param({"0"})
    public int offset;

    /**
     * Q4_K, Q5_K and Q6_K (and Q3_K with 256-bit vectors) only: the rows repacked in groups of 16 as the CPU backend
     * binds them ({@code InterleavedRows}), which the {@code matVec*} and {@code preparedBatch8} methods then read (16
     * rows a call at least);
     * {@code weightBytes} still counts the file's bytes, so that the figure compares with the other layout's (the
     * repacked rows are 1-5.6% larger).
     */
    @Param({"false"})
    public boolean repacked;

    private Arena arena;
    private MemorySegment weights;
    private MemorySegment groups;
    private GgmlType groupType;
    /** Groups of 16 repacked rows per call of the one-token kernel: {@link #rowsPerCall} rounded up. */
    private int groupsPerCall;
    private QuantFormat format;
    private long rowBytes;
    private int rows;
    private float[] x;
    private float[] xBatch;
    private float[] out;
    private float[] outBatch;
    /**
     * The CPU backend's worker pool, whose helper spins between loops: an executor's thread, parked between calls, took
     * tens of microseconds to wake on a 2-vCPU KVM guest, which in-cache matrices (a call of tens of microseconds)
     * measured instead of the kernels.
     */
    private WorkerPool pool;
    private PreparedActivations prepared;
    private PreparedActivations preparedBatch;

    /** Weight bytes read per second, reported as a secondary result. */
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Traffic {
        public long weightBytes;
    }

    /** A worker pool with a thread per processor, made only for the benchmarks that take it. */
    @State(Scope.Benchmark)
    public static class AllCores {
        WorkerPool pool;

        @Setup(Level.Trial)
        public void setUp() {
            pool = new WorkerPool(Runtime.getRuntime().availableProcessors());
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            pool.close();
        }
    }

    @Setup(Level.Trial)
    public void setUp() {
        if (rowsPerCall < 1) {
            throw new IllegalArgumentException("rowsPerCall must be at least 1, not " + rowsPerCall);
        }
        if (offset < 0) {
            throw new IllegalArgumentException("offset must not be negative, not " + offset);
        }
        GgmlType t = GgmlType.valueOf(type);
        format = QuantFormats.of(t);
        rowBytes = t.bytesFor(columns);
        rows = (int) Math.max(2, (kib * 1024L) / rowBytes);
        arena = Arena.ofShared();
        long bytes = rows * rowBytes + offset;
        // without huge pages HugePages gives 64-byte alignment: room to start on a 4 KiB boundary whatever comes back
        MemorySegment block = hugePages ? HugePages.allocateOrPlain(bytes + PAGE, arena) : arena.allocate(bytes, PAGE);
        long start = (PAGE - block.address() % PAGE) % PAGE;
        weights = block.asSlice(start + offset, rows * rowBytes);
        format.randomBlocks(new SplittableRandom(1), weights, 0, rows * rowBytes / t.blockBytes());
        SplittableRandom rnd = new SplittableRandom(2);
        x = new float[columns];
        for (int i = 0; i < columns; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        xBatch = new float[BATCH * columns];
        for (int i = 0; i < xBatch.length; i++) {
            xBatch[i] = (float) rnd.nextGaussian();
        }
        if (repacked) {
            if (!InterleavedRows.fits(t, InterleavedRows.ROWS, columns)) {
                throw new IllegalArgumentException("repacked rows are " + InterleavedRows.types()
                        + " only, whole super-blocks, not " + type);
            }
            rows = rows / InterleavedRows.ROWS * InterleavedRows.ROWS;
            groups = HugePages.allocateOrPlain(InterleavedRows.bytes(t, rows, columns), arena);
            groupType = t;
            InterleavedRows.repack(t, weights, 0, rowBytes, columns, 0, rows / InterleavedRows.ROWS, groups, 0);
            groupsPerCall = (rowsPerCall + InterleavedRows.ROWS - 1) / InterleavedRows.ROWS;
        }
        out = new float[rows];
        outBatch = new float[rows * BATCH];
        pool = new WorkerPool(2);
        prepared = new PreparedActivations();
        prepared.reserve(format, 1, columns);
        prepared.prepareRow(x, 0, 0);
        preparedBatch = new PreparedActivations();
        preparedBatch.reserve(format, BATCH, columns);
        for (int token = 0; token < BATCH; token++) {
            preparedBatch.prepareRow(xBatch, token * columns, token);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
        arena.close();
    }

    private void rows(int from, int to) {
        for (int r = from; r < to; r++) {
            out[r] = format.dot(weights, r * rowBytes, x, 0, columns);
        }
    }

    @Benchmark
    public float[] oneThread(Traffic traffic) {
        rows(0, rows);
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    /** Runs {@code first} and {@code second} on the pool's two threads (the caller takes the first it claims). */
    private void inHalves(Runnable first, Runnable second) {
        pool.parallelFor(2, 1, (from, to, worker) -> {
            for (int half = from; half < to; half++) {
                (half == 0 ? first : second).run();
            }
        });
    }

    @Benchmark
    public float[] twoThreads(Traffic traffic) {
        int half = rows / 2;
        inHalves(() -> rows(0, half), () -> rows(half, rows));
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    @Benchmark
    public float[] batch8(Traffic traffic) {
        for (int r = 0; r < rows; r++) {
            format.dotBatch(weights, r * rowBytes, xBatch, 0, columns, BATCH, outBatch, r * BATCH, 1, columns);
        }
        traffic.weightBytes += rows * rowBytes;
        return outBatch;
    }

    private void preparedRows(int from, int to) {
        for (int r = from; r < to; r++) {
            format.dotPrepared(weights, r * rowBytes, prepared, 0, 1, out, r, 1);
        }
    }

    @Benchmark
    public float[] preparedOneThread(Traffic traffic) {
        preparedRows(0, rows);
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    @Benchmark
    public float[] preparedTwoThreads(Traffic traffic) {
        int half = rows / 2;
        inHalves(() -> preparedRows(0, half), () -> preparedRows(half, rows));
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    /** What the CPU backend's decode step runs: {@code dotPreparedRows} with one token, {@link #rowsPerCall} rows a call. */
    private void matVecRows(int from, int to) {
        if (groups != null) {
            for (int g = from / InterleavedRows.ROWS, end = to / InterleavedRows.ROWS; g < end; g += groupsPerCall) {
                int next = Math.min(end, g + groupsPerCall);
                InterleavedRows.dot(groupType, groups, 0, g, next, prepared, 0, 1, out, g * InterleavedRows.ROWS, rows);
            }
            return;
        }
        for (int r = from; r < to; r += rowsPerCall) {
            int n = Math.min(rowsPerCall, to - r);
            format.dotPreparedRows(weights, r * rowBytes, rowBytes, n, prepared, 0, 1, out, r, rows);
        }
    }

    @Benchmark
    public float[] matVecOneThread(Traffic traffic) {
        matVecRows(0, rows);
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    @Benchmark
    public float[] matVecTwoThreads(Traffic traffic) {
        // the nearest whole number of calls to half the rows (rounding down would give the helper up to a call more)
        int unit = groups != null ? InterleavedRows.ROWS * groupsPerCall : rowsPerCall;
        int half = Math.min(rows, (int) Math.round(rows / 2.0 / unit) * unit);
        inHalves(() -> matVecRows(0, half), () -> matVecRows(half, rows));
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    @Benchmark
    public float[] matVecAllThreads(Traffic traffic, AllCores all) {
        int unit = groups != null ? InterleavedRows.ROWS * groupsPerCall : rowsPerCall;
        all.pool.parallelFor((rows + unit - 1) / unit, 1,
                (from, to, worker) -> matVecRows(from * unit, Math.min(rows, to * unit)));
        traffic.weightBytes += rows * rowBytes;
        return out;
    }

    @Benchmark
    public float[] preparedBatch8(Traffic traffic) {
        if (groups != null) {
            InterleavedRows.dot(groupType, groups, 0, 0, rows / InterleavedRows.ROWS, preparedBatch, 0, BATCH, outBatch, 0,
                    rows);
        } else {
            format.dotPreparedRows(weights, 0, rowBytes, rows, preparedBatch, 0, BATCH, outBatch, 0, rows);
        }
        traffic.weightBytes += rows * rowBytes;
        return outBatch;
    }
}
