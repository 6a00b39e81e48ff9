package moe4j.kernels.cuda;

import static moe4j.kernels.BackendChecks.requireRows;
import static moe4j.kernels.BackendChecks.requireWidth;

import static moe4j.kernels.cuda.CudaDriver.check;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.stream.IntStream;

import jcuda.NativePointerObject;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUfunction;
import jcuda.driver.CUgraph;
import jcuda.driver.CUgraphExec;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;
import jcuda.driver.CUstreamCaptureMode;
import jcuda.driver.JCudaDriver;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.BackendChecks;
import moe4j.kernels.ExpertBuffers;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.Rope;
import moe4j.kernels.StagingArea;
import moe4j.kernels.StepRecorder;
import moe4j.kernels.Weight;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;
import moe4j.kernels.quant.UnsupportedTensorTypeException;

/**
 * The CUDA backend: one GPU through the driver API (JCuda), kernels from the PTX in the jar. Weights
 * are uploaded once through pinned staging buffers; activations, the KV cache and the MoE routing stay
 * in device memory, so a step talks to the host only to take tokens in and hand logits out. Every
 * operation is enqueued on the context's default stream in call order; {@link #read} waits for it.
 *
 * <p>Prompt batches of more than {@value #MATVEC_MAX_TOKENS} tokens use a tiled matrix kernel that
 * dequantizes weight tiles into shared memory; smaller batches (decode), and matrices of at most
 * {@value #MATVEC_MAX_ROWS_ANY_BATCH} rows, use matrix-vector kernels, a warp per weight row, with the weights
 * dequantized in registers (or, for Q3_K to Q6_K, multiplied as integers with activations rounded to Q8_K).
 * Mixture-of-experts layers route on the device: for a few tokens each (token, expert) pair runs the fused
 * gate/up and down/combine kernels directly on the router's choice; for larger batches the assignments are
 * grouped by expert on the device and each expert's rows run through the tiled kernel once.
 *
 * <p>Decode steps run through {@link #stepRecorder()} are recorded once as a CUDA graph and replayed per
 * token, which saves the host the cost of launching each of the step's hundreds of kernels; the token
 * id and the position then come from device memory. {@code -Dmoe4j.cuda.graphs=false} runs them
 * directly, as does a recording that fails.
 *
 * <p>Thread-safe: operations are serialized. Set the system property {@code moe4j.cuda.sync=true} to wait
 * for every kernel and name the one that failed (slow; for debugging; no graphs then), and
 * {@code moe4j.cuda.profile=true} to time every operation ({@link CudaProfile}; no graphs then either).
 */
public final class CudaBackend implements Backend {

    /** Largest batch that uses the matrix-vector kernels. */
    static final int MATVEC_MAX_TOKENS = 4;
    /**
     * Matrices of at most this many rows use the matrix-vector kernels at any batch size (unless
     * {@link #SMALL_MATRICES_ON_TENSOR_CORES_FROM} sends them to the tensor cores).
     */
    static final int MATVEC_MAX_ROWS_ANY_BATCH = 1024;
    /**
     * Batches from which such small matrices take the tensor cores instead where their format has them
     * ({@code -Dmoe4j.cuda.smallMatricesOnTensorCoresFrom=N}, default 256; 0 never): a layer's k and v (512 rows)
     * cost as much as its q (4096 rows) at 512 tokens, as the matrix-vector kernels read the weights once per token,
     * the tensor-core tiles once per 64 tokens (in 8 blocks per 64 tokens: too few blocks for small batches).
     */
    private static final int SMALL_MATRICES_ON_TENSOR_CORES_FROM =
            Integer.getInteger("moe4j.cuda.smallMatricesOnTensorCoresFrom", 256);
    /** Largest number of (token, expert) pairs that run without grouping by expert. */
    static final int DIRECT_EXPERT_ASSIGNMENTS = 32;
    static final int MV_ROWS_PER_BLOCK = 4;
    /** Rows per block of the Q8_K expert down projection + combine kernel. */
    private static final int MVQ_COMBINE_ROWS_PER_BLOCK = 8;
    /** Dynamic shared memory a kernel gets without raising its limit. */
    private static final int MAX_DEFAULT_SHARED_BYTES = 48 * 1024;
    /**
     * Blocks per multiprocessor of a grid-stride Q8_K matrix-vector kernel, shared among the grid's rows of blocks
     * (tokens or experts): a larger matrix loops over its rows within its blocks. Each block rounds its activations
     * first, so fewer blocks read fewer of them ({@code -Dmoe4j.cuda.mvqBlocksPerSm=N}, an experiment: for the
     * queries and keys of Qwen3-235B-A22B (mvq_multi) the 2176 blocks read 35 MB of activations from L2 for 15 MB
     * of weights).
     */
    static final int MVQ_BLOCKS_PER_MULTIPROCESSOR = Integer.getInteger("moe4j.cuda.mvqBlocksPerSm", 16);
    /** The types whose blocks the CUDA backend can pad to 16-byte alignment (see {@link #padded}). */
    static final Set<GgmlType> PADDABLE = Collections.unmodifiableSet(EnumSet.of(GgmlType.Q3_K, GgmlType.Q6_K));
    /**
     * The types a new backend pads. Q3_K (unless {@code -Dmoe4j.cuda.padQ3k=false}): its 110-byte blocks 112 bytes
     * apart in device memory, so that the kernels read each 16-byte run with one aligned load (the *_q3_kp kernels)
     * instead of five words and funnel shifts, and the scales and d with one more; the same bits, 2.7% more memory for
     * rows of 4096 values (H200, runs 23 and 26: 94 layers of the 235B shape tg64 86.5 -> 93.5 tok/s, pp512 1178.7 ->
     * 1178.9). Q6_K (with {@code -Dmoe4j.cuda.padQ6k=true}, an experiment not yet measured on a GPU): its 210-byte
     * blocks 224 bytes apart (the *_q6_kp kernels), each 16-byte run of quants one aligned load instead of five words
     * and four funnel shifts; the same bits, 6.7% more memory for Q6_K; ptxas, sm_90: the LM head's kernel 568 -> 496
     * instructions and 69 -> 58 registers, the down projection's 848 -> 776 and 79 -> 64.
     */
    private static final Set<GgmlType> PADDED_BY_DEFAULT = paddedByDefault();
    /**
     * Whether the kernels that read little right after their wait first ask L2 for it, while the kernel before them
     * still runs under programmatic dependent launch: the norms their gains, the router its rows, one-token attention
     * the cache rows of earlier positions. A decode step streams 1-2 GB of weights, which evicts L2 between tokens, so
     * these reads otherwise go to DRAM after the wait, on the step's critical path. The same results either way; an
     * experiment not yet measured on a GPU, off unless {@code -Dmoe4j.cuda.prefetch=true}.
     */
    private static final boolean PREFETCH = "true".equalsIgnoreCase(
            System.getProperty("moe4j.cuda.prefetch"));
    /**
     * Bytes after each padded row (twice as many where that would make the row a multiple of 256 bytes), so that the
     * rows of the tensor-core tiles do not lie a multiple of 256 bytes apart: Q3_K rows of 4096 values padded are 1792
     * bytes, 7 x 256, and the prompt's Q3_K products ran 24% slower so (H200, runs 24-25; 16 or 48 bytes more, as fast
     * as the file's layout).
     */
    private static final int PAD_ROW_EXTRA = 16;
    private static final int MM_ROWS = 128;
    private static final int MM_TOKENS = 64;
    /** Weight rows, token rows and threads of a tensor-core tile ({@code mmq_*}). */
    private static final int MMQ_ROWS = 64;
    private static final int MMQ_TOKENS = 64;
    private static final int MMQ_THREADS = 256;
    private static final int MAX_GRID_Y = 65535;
    private static final int MAX_HEAD_DIM = 256;
    private static final int ATTENTION_DECODE_WARPS = 16;
    /** Query rows and threads of a tiled prompt attention block (ATT_TILE_ROWS, ATT_TILE_THREADS in moe4j.cu). */
    private static final int ATTENTION_TILE_ROWS = 16;
    private static final int ATTENTION_TILE_THREADS = 256;
    private static final int MAX_EXPERTS = 1024;
    private static final int MAX_ROPE_DIMS = 1024;
    private static final long STAGING_BYTES = 32L << 20;
    private static final long FILL_SLICE_BYTES = 2L << 20;
    /** A thread that owns no segment (never started): a segment it may access may be read by any thread. */
    private static final Thread NOT_THE_OWNER = new Thread(() -> { });
    private static final boolean SYNC = Boolean.getBoolean("moe4j.cuda.sync");
    private static final boolean GRAPHS = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.graphs"));
    /**
     * Fused launches of several operations (matmul3, route); {@code -Dmoe4j.cuda.fuse=false} runs each
     * operation alone, to compare the two on one machine.
     */
    private static final boolean FUSE = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.fuse"));
    /** Decode attention with 16 warps per head ({@code -Dmoe4j.cuda.decodeAttention=false}: the prompt kernel's 4). */
    private static final boolean DECODE_ATTENTION =
            !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.decodeAttention"));
    /** The context each thread last made current (the driver keeps one per thread). */
    private static final ThreadLocal<CUcontext> CURRENT = new ThreadLocal<>();

    private final int index;
    private final CudaDevices.Device info;
    private final String label;
    private final CUdevice device = new CUdevice();
    private final CUcontext context = new CUcontext();
    private final Kernels kernels;
    private final DeviceMemory memory;
    /** Every kernel and device-side copy goes here; blocking, so the synchronous copies still wait for it. */
    private final CUstream stream = new CUstream();
    /**
     * Null while kernels launch with programmatic dependent launch ({@link ProgrammaticLaunch}), else why they
     * launch one after the other.
     */
    private String sequentialReason;
    /** The native memory of programmatic launches, or null without them. */
    private final ProgrammaticLaunch.Scratch launchScratch;
    /**
     * Prompts' attention over key and value tiles staged in shared memory for 16 query rows at a time
     * (attention_tiled_*), for heads of 128 values and batches of 16 rows or more; otherwise, or with
     * {@code -Dmoe4j.cuda.tiledAttention=false}, every query row walks the cache alone (attention_*).
     */
    private boolean tiledAttention = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.tiledAttention"));
    /**
     * One-token steps round the normed activations to Q8_K once, in add_rms_norm, for the matrix-vector products that
     * read them next (instead of in every block of those products); {@code -Dmoe4j.cuda.roundOnce=false} rounds in
     * every block. Buffers allocated while it is on get the room for it.
     */
    private boolean roundOnce = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.roundOnce"));
    /**
     * Warps (router rows) per block of the fused router product and top-k of one-token steps: 1 (route_f32_w1: a
     * token's 128 rows on 128 multiprocessors instead of 32; H200, run 19: 15.6 -> 13.9 us a layer, 30B tg128 +4%),
     * or 4 (route_f32, {@code -Dmoe4j.cuda.routeWarps=4}; the same bits). Batches take 4.
     */
    private int routeWarps = eitherProperty("moe4j.cuda.routeWarps", 1, MV_ROWS_PER_BLOCK);
    /**
     * One-token attention over heads of 128 rounds its output to Q8_K once (attention_decode_rounded_*), for the output
     * projection right after it, instead of each of that product's blocks rounding it (H200, run 19: the 235B's
     * output projection 21.7 -> 12.8 us a layer; {@code -Dmoe4j.cuda.attentionRounds=false} turns it off; the same
     * bits).
     */
    private boolean attentionRounds = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.attentionRounds"));
    /**
     * Small batches (at most {@link #DIRECT_EXPERT_ASSIGNMENTS} expert assignments: decoding) round the experts' SwiGLU
     * rows once (round_rows) for their down projection (mvq_combine_rounded_*), instead of each of its blocks rounding
     * all of them into shared memory (H200, run 19: the 235B's down projection 34.3 -> 28.3 us a layer;
     * {@code -Dmoe4j.cuda.combineRoundsOnce=false} turns it off; the same bits).
     */
    private boolean combineRoundsOnce = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.combineRoundsOnce"));
    /** The types whose matrices bound from now on are padded (see {@link #PADDED_BY_DEFAULT}); an immutable set. */
    private volatile Set<GgmlType> padded = PADDED_BY_DEFAULT;
    /** Whether kernels ask L2 for what they read first before they wait (see {@link #PREFETCH}). */
    private boolean prefetch = PREFETCH;
    /**
     * Blocks a multiprocessor the experts' gate and up kernel of one-token steps is compiled for: 4, or 8
     * (mvq_pair_rounded_o8_*, {@code -Dmoe4j.cuda.pairOccupancy=8}, an experiment not yet measured on a GPU; the same
     * bits). Nsight Compute (H200, run 23) had the padded Q3_K kernel at 78 registers, so 6 blocks of 4 warps
     * resident, 32% achieved occupancy, its compute busier than its memory; with 8 asked ptxas fits it in 60 registers,
     * no spills.
     */
    private int pairOccupancy = eitherProperty("moe4j.cuda.pairOccupancy", 4, 8);
    /** Counts the backend's operations (each calls {@link #makeCurrent} first). */
    private long operations;
    /** The buffer whose first {@link #roundedCount} rows operation {@link #roundedAt} (a norm or attention) rounded. */
    private CudaActivations roundedBuffer;
    private int roundedCount;
    private long roundedAt;
    /** The operation of the last {@link #route}, which may come between a norm and the experts that read it. */
    private long routedAt = -1;
    private long roundedLaunches;
    private final Set<CudaStepGraph> stepGraphs = Collections.newSetFromMap(new IdentityHashMap<>());
    /** While a decode step is being recorded: where its token and position live on the device. */
    private Capture capture;
    private CUdeviceptr tokenIds;
    private int tokenCapacity;
    private Staging staging;
    private boolean closed;
    /** Times every operation when profiling is on ({@link CudaProfile}), else null. */
    private final CudaProfile.Recorder profiler;
    /** Scratch for {@link #roundedQ8k}: activations rounded to Q8_K for a batched product, and its bytes. */
    private CUdeviceptr rounded;
    private long roundedBytes;
    /** Scratch for {@link #quantizedQ8k}, and its bytes. */
    private CUdeviceptr quantized;
    private long quantizedBytes;
    /** What the next launch does, for the profile: a name prefix, the bytes it reads and its flops. */
    private String opName;
    private long opBytes;
    private long opFlops;

    private CudaBackend(int index) {
        CudaDriver.init();
        int[] count = new int[1];
        check(JCudaDriver.cuDeviceGetCount(count), "cuDeviceGetCount");
        if (index < 0 || index >= count[0]) {
            throw new CudaUnavailableException("cuda:" + index + " does not exist: this machine has " + count[0]
                    + " CUDA device" + (count[0] == 1 ? " (cuda:0)" : "s (cuda:0 to cuda:" + (count[0] - 1) + ")"));
        }
        this.index = index;
        this.info = CudaDevices.describe(index);
        this.label = "cuda:" + index + " (" + info.name() + ")";
        if (!info.supported()) {
            throw new CudaUnavailableException(label + " has compute capability " + info.computeCapability()
                    + "; moe4j's CUDA kernels need " + CudaDevices.MIN_MAJOR + ".0 or newer");
        }
        check(JCudaDriver.cuDeviceGet(device, index), "cuDeviceGet(" + index + ")");
        check(JCudaDriver.cuDevicePrimaryCtxRetain(context, device), "creating a context on " + label);
        try {
            makeCurrent();
            this.kernels = new Kernels(info.major(), label);
            if (PREFETCH) {  // the flag starts at 0 in the module: off needs no lookup
                kernels.prefetch(true);
            }
            check(JCudaDriver.cuStreamCreate(stream, 0), "creating a stream on " + label);
        } catch (RuntimeException e) {
            JCudaDriver.cuDevicePrimaryCtxRelease(device);
            throw e;
        }
        this.sequentialReason = ProgrammaticLaunch.unavailableReason(info.major());
        this.launchScratch = sequentialReason == null ? new ProgrammaticLaunch.Scratch() : null;
        this.memory = new DeviceMemory(label, this::bindContext);
        if (CudaProfile.ENABLED) {
            profiler = new CudaProfile.Recorder(stream, nanos -> launchDirect(kernels.profileDelay,
                    "profile_delay", 1, 1, 32, 0, nanos));
            CudaProfile.register(this);
        } else {
            profiler = null;
        }
    }

    /**
     * A backend on device {@code cuda:index}.
     *
     * @throws CudaUnavailableException when there is no driver, no such device, or it is too old
     */
    public static CudaBackend open(int index) {
        return new CudaBackend(index);
    }

    /** The KV cache types this backend stores. */
    public static boolean supportsKvCache(KvCacheType type) {
        return type == KvCacheType.F16 || type == KvCacheType.F32;
    }

    public CudaDevices.Device device() { return info; }

    @Override
    public String description() {
        return label + ", " + DeviceMemory.size(info.totalMemory()) + ", compute " + info.computeCapability();
    }

    /** Turns the tiled prompt attention on or off (tests compare both with the CPU). */
    synchronized void useTiledAttention(boolean on) {
        tiledAttention = on;
    }

    /**
     * How consecutive kernels start: "overlapped" (programmatic dependent launch), or "one after the other"
     * and why.
     */
    synchronized String kernelLaunches() {
        return sequentialReason == null ? "overlapped (programmatic dependent launch)"
                : "one after the other: programmatic dependent launch " + sequentialReason;
    }

    /** Device memory held for weights, KV caches and activations, and what is left, for messages. */
    public synchronized String memorySummary() {
        makeCurrent();
        return memory.summary();
    }

    /** Bytes of device memory held for weights. */
    public synchronized long weightBytes() {
        return memory.used(DeviceMemory.Use.WEIGHTS);
    }

    synchronized long bytesUsed(DeviceMemory.Use use) {
        return memory.used(use);
    }

    /**
     * Fails early, with a message naming {@code what}, when {@code bytes} do not fit in the device
     * memory that is free now (e.g. before uploading a model's weights).
     */
    public synchronized void requireFree(long bytes, String what) {
        makeCurrent();
        memory.requireFree(bytes, what);
    }

    /** Starts an operation of the backend (under its lock): counts it and makes its context current. */
    private void makeCurrent() {
        operations++;
        bindContext();
    }

    /** Makes the context current on this thread (also for device memory freed without the backend's lock). */
    private void bindContext() {
        if (closed) {
            throw new IllegalStateException("the CUDA backend of " + label + " is closed");
        }
        if (CURRENT.get() != context) {
            check(JCudaDriver.cuCtxSetCurrent(context), "making the context of " + label + " current");
            CURRENT.set(context);
        }
    }

    /** Host transfers and allocations cannot be part of a recorded step. */
    private void requireNotRecording(String what) {
        if (capture != null) {
            throw new IllegalStateException(what + " is not allowed inside a recorded decode step");
        }
    }

    // ---------------------------------------------------------------- resources

    @Override
    public synchronized Weight bind(GgufTensor tensor) {
        makeCurrent();
        requireNotRecording("binding a weight");
        Shape t = shape(tensor);
        CUdeviceptr p = memory.allocate(t.deviceBytes(), DeviceMemory.Use.WEIGHTS, "tensor " + t.name());
        try {
            return t.isVector() ? uploadVector(tensor, t, p) : uploadMatrix(tensor, t, p);
        } catch (RuntimeException e) {
            memory.free(p);
            throw e;
        }
    }

    /** A matrix or stack of matrices, copied to {@code p} in its storage format (blocks padded: {@link #padded}). */
    private CudaWeight uploadMatrix(GgufTensor tensor, Shape t, CUdeviceptr p) {
        upload(tensor.data(), t.bytes(), p, t.name(), t.padding());
        long rowBytes = t.deviceRowBytes();
        return new CudaWeight(t.name(), tensor.type(), t.rowLength(), t.rows(), t.experts(), p, tensor.type(),
                t.padding() != null, rowBytes, rowBytes * t.rows());
    }

    /**
     * Rows of {@code fileRow} bytes, blocks of {@code from} bytes, laid out in device memory as rows of {@code
     * deviceRow} bytes whose blocks lie {@code to} bytes apart, the bytes between and after them zero.
     */
    record BlockPadding(int from, int to, long fileRow, long deviceRow) {
        long deviceBytes(long fileBytes) {
            return fileBytes / fileRow * deviceRow;
        }
    }

    /**
     * A tensor's shape, checked for what the CUDA backend handles; {@code padding} null where the device keeps the
     * file's layout.
     */
    private record Shape(String name, int rowLength, int rows, int experts, long rowBytes, long bytes,
                         BlockPadding padding) {

        boolean isVector() {
            return (long) rows * experts == 1;
        }

        long deviceRowBytes() {
            return padding == null ? rowBytes : padding.deviceBytes(rowBytes);
        }

        /** Bytes on the device: a vector decoded to f32, a matrix in its storage format. */
        long deviceBytes() {
            return isVector() ? 4L * rowLength : deviceRowBytes() * rows * experts;
        }
    }

    /** {@link #PADDED_BY_DEFAULT} from the system properties. */
    private static Set<GgmlType> paddedByDefault() {
        EnumSet<GgmlType> types = EnumSet.noneOf(GgmlType.class);
        if (!"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.padQ3k"))) {
            types.add(GgmlType.Q3_K);
        }
        if ("true".equalsIgnoreCase(System.getProperty("moe4j.cuda.padQ6k"))) {
            types.add(GgmlType.Q6_K);
        }
        return Collections.unmodifiableSet(types);
    }

    /** Bytes from one padded block of {@code type} to the next, 16-byte aligned. */
    private static int paddedBlockBytes(GgmlType type) {
        return switch (type) {
            case Q3_K -> 112;
            case Q6_K -> 224;
            default -> throw new IllegalArgumentException("the CUDA backend pads Q3_K and Q6_K blocks, not " + type);
        };
    }

    /**
     * Bytes of a row of {@code type} ({@code fileRowBytes} in the file) padded (see {@link #PADDED_BY_DEFAULT}),
     * or -1 for a row longer than a staging buffer, which keeps the file's layout (a row is staged whole).
     */
    static long paddedRowBytes(GgmlType type, long fileRowBytes) {
        long padded = fileRowBytes / type.blockBytes() * paddedBlockBytes(type) + PAD_ROW_EXTRA;
        if (padded % 256 == 0) {
            padded += PAD_ROW_EXTRA;
        }
        return padded <= STAGING_BYTES ? padded : -1;
    }

    /**
     * How {@code rows} rows (of all stacked matrices) of {@code type}, {@code fileRowBytes} each in the file, lie in
     * device memory: padded where {@code padded} holds the type and their rows fit a staging buffer; else (null) as
     * the file has them.
     */
    private static BlockPadding padding(Set<GgmlType> padded, GgmlType type, long rows, long fileRowBytes) {
        if (!padded.contains(type) || rows <= 1) {
            return null;
        }
        long paddedRow = paddedRowBytes(type, fileRowBytes);
        return paddedRow > 0
                ? new BlockPadding(type.blockBytes(), paddedBlockBytes(type), fileRowBytes, paddedRow) : null;
    }

    /**
     * Bytes a new backend holds in device memory for a tensor of {@code type} and {@code dims} that has {@code
     * fileBytes} in the file (for planning before any GPU is opened): a single row decoded to f32, a Q3_K matrix
     * padded as a new backend pads it ({@link #PADDED_BY_DEFAULT}), anything else as the file has it.
     */
    public static long heldBytes(GgmlType type, long[] dims, long fileBytes) {
        long rows = 1;
        for (int i = 1; i < dims.length; i++) {
            rows = Math.multiplyExact(rows, dims[i]);
        }
        if (rows == 1) {
            return 4L * dims[0];
        }
        BlockPadding padding = padding(PADDED_BY_DEFAULT, type, rows, fileBytes / rows);
        return padding == null ? fileBytes : padding.deviceBytes(fileBytes);
    }

    private Shape shape(GgufTensor tensor) {
        String name = tensor.name();
        QuantFormat format = QuantFormats.of(tensor.type());
        long[] shape = tensor.shape();
        if (shape[3] != 1) {
            throw new IllegalArgumentException("tensor " + name + " has 4 dimensions " + Arrays.toString(shape)
                    + "; the CUDA backend handles at most 3");
        }
        if (shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE || shape[2] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tensor " + name + " dimension too large: " + Arrays.toString(shape));
        }
        int rowLength = (int) shape[0];
        int rows = (int) shape[1];
        int experts = (int) shape[2];
        if (rowLength % format.blockSize() != 0) {
            throw new IllegalArgumentException("tensor " + name + " row length " + rowLength
                    + " is not a multiple of the " + tensor.type() + " block size " + format.blockSize());
        }
        long rowBytes = tensor.rowBytes();
        long bytes = Math.multiplyExact(rowBytes, Math.multiplyExact((long) rows, experts));
        if (tensor.data().byteSize() < bytes) {
            throw new IllegalArgumentException("tensor " + name + " holds " + tensor.data().byteSize()
                    + " bytes, its shape needs " + bytes);
        }
        Shape t = new Shape(name, rowLength, rows, experts, rowBytes, bytes,
                padding(padded, tensor.type(), (long) rows * experts, rowBytes));
        if (!t.isVector()) {
            if (!Kernels.FORMATS.contains(tensor.type())) {
                throw new UnsupportedTensorTypeException(tensor.type(), "tensor " + name
                        + ": the CUDA backend has no kernels for " + tensor.type().ggmlName());
            }
            if (rowLength % 16 != 0) {
                throw new IllegalArgumentException("tensor " + name + " has rows of " + rowLength
                        + " values; the CUDA backend needs a multiple of 16");
            }
        }
        return t;
    }

    /**
     * A single-row tensor (a norm's gains), decoded on the host and copied to {@code p} as f32 through the pinned
     * buffers: a copy from pageable memory would wait for the compute stream, which staging must not.
     */
    private CudaWeight uploadVector(GgufTensor tensor, Shape t, CUdeviceptr p) {
        float[] values = new float[t.rowLength()];
        QuantFormats.of(tensor.type()).dequantize(tensor.data(), 0, values, 0, t.rowLength());
        upload(MemorySegment.ofArray(values), 4L * t.rowLength(), p, t.name(), null);
        return new CudaWeight(t.name(), tensor.type(), t.rowLength(), t.rows(), t.experts(), p, GgmlType.F32, false,
                4L * t.rowLength(), 4L * t.rowLength());
    }

    /**
     * Device memory weights are staged into: a block of {@link DeviceMemory}, returned on close. {@code released}
     * is recorded on the stream when another area begins staging: behind it are all the operations that may read
     * what this area holds.
     */
    private final class CudaStaging implements StagingArea {
        final CUdeviceptr data;
        final long bytes;
        final CUevent released = new CUevent();
        boolean recorded;
        boolean closed;

        CudaStaging(CUdeviceptr data, long bytes) {
            this.data = data;
            this.bytes = bytes;
            check(JCudaDriver.cuEventCreate(released, CUevent_flags.CU_EVENT_DISABLE_TIMING),
                    "creating a staging event on " + label);
        }

        @Override
        public long bytes() { return bytes; }

        @Override
        public void close() {
            synchronized (CudaBackend.this) {
                if (!closed && !CudaBackend.this.closed) {
                    makeCurrent();
                    // kernels still reading the area must be done before its memory goes back
                    JCudaDriver.cuStreamSynchronize(stream);
                    memory.free(data);
                }
                release();
            }
        }

        /** Its event, once; the memory goes with the backend's when the backend closes first. */
        void release() {
            if (!closed) {
                closed = true;
                JCudaDriver.cuEventDestroy(released);
                stagingAreas.remove(this);
                if (lastStaged == this) {
                    lastStaged = null;
                }
            }
        }
    }

    /** The area staged into last: the operations enqueued since may read it. */
    private CudaStaging lastStaged;
    /** The staging areas not closed yet, whose events go when the backend closes. */
    private final List<CudaStaging> stagingAreas = new ArrayList<>();

    @Override
    public synchronized StagingArea allocateStaging(long bytes) {
        makeCurrent();
        requireNotRecording("allocating a staging area");
        if (bytes <= 0) {
            return StagingArea.NONE;
        }
        // counted as activations: the planner counts the area with a device's scratch
        CudaStaging area = new CudaStaging(memory.allocate(bytes, DeviceMemory.Use.ACTIVATIONS,
                "a staging area for weights computed on " + label + " from system RAM"), bytes);
        stagingAreas.add(area);
        return area;
    }

    /**
     * Waits only for the operations that may read {@code area}: with two areas taken in turn, a layer's weights are
     * copied in while the GPU still computes with the previous layer's.
     */
    @Override
    public synchronized void beginStaging(StagingArea area) {
        makeCurrent();
        requireNotRecording("staging weights");
        CudaStaging a = openArea(area);
        if (lastStaged == a) {
            check(JCudaDriver.cuStreamSynchronize(stream), "waiting for " + label + " before staging again");
        } else {
            if (lastStaged != null) {
                check(JCudaDriver.cuEventRecord(lastStaged.released, stream), "marking a staging area's readers");
                lastStaged.recorded = true;
            }
            if (a.recorded) {
                check(JCudaDriver.cuEventSynchronize(a.released), "waiting for the readers of a staging area");
            }
        }
        lastStaged = a;
    }

    private CudaStaging openArea(StagingArea area) {
        if (!(area instanceof CudaStaging a) || a.closed) {
            throw new IllegalArgumentException("staging area " + area + " is not an open area of " + label);
        }
        return a;
    }

    /** Whole 256-byte units, so that every staged tensor starts as aligned as an allocation of its own. */
    @Override
    public long stagedBytes(GgufTensor tensor) {
        return (shape(tensor).deviceBytes() + 255) & ~255L;
    }

    @Override
    public synchronized Weight stage(GgufTensor tensor, StagingArea area, long offset) {
        makeCurrent();
        requireNotRecording("staging a weight");
        CudaStaging a = openArea(area);
        if (lastStaged != a) {
            throw new IllegalStateException("staging " + tensor.name() + " into an area of " + label
                    + " that was not begun (beginStaging) since another was");
        }
        Shape t = shape(tensor);
        long need = stagedBytes(tensor);
        if (offset < 0 || offset % 256 != 0 || offset + need > a.bytes) {
            throw new IllegalArgumentException("tensor " + t.name() + " (" + need + " bytes) does not fit the staging"
                    + " area of " + a.bytes + " bytes at " + offset);
        }
        CUdeviceptr p = a.data.withByteOffset(offset);
        return t.isVector() ? uploadVector(tensor, t, p) : uploadMatrix(tensor, t, p);
    }

    /** Two pinned host buffers: one is filled from the mapped file while the other's copy to the device runs. */
    private record Staging(Pointer[] host, MemorySegment[] segments, CUevent[] done, CUstream stream) {}

    /** {@code bytes} of {@code src} to {@code dst}, their blocks laid out by {@code padding} (null: as they are). */
    private void upload(MemorySegment src, long bytes, CUdeviceptr dst, String name, BlockPadding padding) {
        if (staging == null) {
            staging = newStaging();
        }
        Staging s = staging;
        int buffer = 0;
        long total = padding == null ? bytes : padding.deviceBytes(bytes);
        long chunk = padding == null ? STAGING_BYTES : STAGING_BYTES / padding.deviceRow() * padding.deviceRow();
        for (long offset = 0; offset < total; offset += chunk) {
            long len = Math.min(chunk, total - offset);
            check(JCudaDriver.cuEventSynchronize(s.done[buffer]), "uploading " + name + " to " + label);
            fill(s.segments[buffer], src, offset, len, padding);
            check(JCudaDriver.cuMemcpyHtoDAsync(dst.withByteOffset(offset), s.host[buffer], len, s.stream),
                    "uploading " + name + " to " + label);
            check(JCudaDriver.cuEventRecord(s.done[buffer], s.stream), "uploading " + name);
            buffer ^= 1;
        }
        check(JCudaDriver.cuStreamSynchronize(s.stream), "uploading " + name + " to " + label);
    }

    /**
     * Fills {@code len} bytes of the pinned buffer with the device's bytes from {@code offset} on (those of {@code src}
     * laid out by {@code padding}), in slices on the common pool's threads: one thread copies about 10 GB/s, a fifth of
     * what the link to the GPU takes, and large batches of experts kept in system RAM are staged through here every
     * layer.
     */
    static void fill(MemorySegment pinned, MemorySegment src, long offset, long len, BlockPadding padding) {
        long slice = padding == null ? FILL_SLICE_BYTES
                : Math.max(1, FILL_SLICE_BYTES / padding.deviceRow()) * padding.deviceRow();
        int slices = (int) ((len + slice - 1) / slice);
        if (slices <= 1 || !src.isAccessibleBy(NOT_THE_OWNER)) {   // a confined segment: its own thread only
            copy(pinned, 0, src, offset, len, padding);
            return;
        }
        IntStream.range(0, slices).parallel().forEach(i -> {
            long at = i * slice;
            copy(pinned, at, src, offset + at, Math.min(slice, len - at), padding);
        });
    }

    /** {@code len} bytes of the device's layout from {@code offset} on into the pinned buffer at {@code at}. */
    private static void copy(MemorySegment pinned, long at, MemorySegment src, long offset, long len,
                             BlockPadding padding) {
        if (padding == null) {
            MemorySegment.copy(src, offset, pinned, at, len);
            return;
        }
        long blocks = padding.fileRow() / padding.from();
        long rowEnd = blocks * padding.to();
        long fileRow = offset / padding.deviceRow() * padding.fileRow();
        for (long row = at; row < at + len; row += padding.deviceRow(), fileRow += padding.fileRow()) {
            for (long b = 0; b < blocks; b++) {
                long to = row + b * padding.to();
                MemorySegment.copy(src, fileRow + b * padding.from(), pinned, to, padding.from());
                pinned.asSlice(to + padding.from(), padding.to() - padding.from()).fill((byte) 0);
            }
            pinned.asSlice(row + rowEnd, padding.deviceRow() - rowEnd).fill((byte) 0);
        }
    }

    private Staging newStaging() {
        Pointer[] host = new Pointer[2];
        MemorySegment[] segments = new MemorySegment[2];
        CUevent[] done = new CUevent[2];
        CUstream stream = new CUstream();
        check(JCudaDriver.cuStreamCreate(stream, 0), "creating the upload stream on " + label);
        for (int i = 0; i < 2; i++) {
            host[i] = new Pointer();
            check(JCudaDriver.cuMemAllocHost(host[i], STAGING_BYTES), "allocating pinned host memory for uploads");
            segments[i] = MemorySegment.ofBuffer(host[i].getByteBuffer(0, STAGING_BYTES));
            done[i] = new CUevent();
            check(JCudaDriver.cuEventCreate(done[i], 0), "creating an upload event");
        }
        return new Staging(host, segments, done, stream);
    }

    @Override
    public synchronized Activations allocate(int capacity, int width) {
        makeCurrent();
        requireNotRecording("allocating a buffer");
        if (capacity <= 0 || width <= 0) {
            throw new IllegalArgumentException("activation buffer needs positive rows and width, got "
                    + capacity + " x " + width);
        }
        int pitch = CudaActivations.pitchOf(width);
        long bytes = 4L * capacity * pitch;
        CUdeviceptr p = memory.allocate(bytes, DeviceMemory.Use.ACTIVATIONS,
                "an activation buffer of " + capacity + " x " + width);
        check(JCudaDriver.cuMemsetD32(p, 0, bytes / 4), "clearing an activation buffer on " + label);
        CUdeviceptr rounded = null;
        if (roundOnce && width % 256 == 0) {
            try {
                long sideBytes = CudaActivations.roundedSideBytes(capacity, width);
                rounded = memory.allocate(sideBytes, DeviceMemory.Use.ACTIVATIONS,
                        "rounded rows of an activation buffer of " + capacity + " x " + width);
                check(JCudaDriver.cuMemsetD8(rounded, (byte) 0, sideBytes), "clearing rounded rows on " + label);
            } catch (RuntimeException e) {
                if (rounded != null) {
                    memory.free(rounded);
                }
                memory.free(p);
                throw e;
            }
        }
        return new CudaActivations(memory, p, capacity, width, pitch, rounded);
    }

    @Override
    public synchronized ExpertRouting allocateRouting(int experts, int k, int capacity) {
        makeCurrent();
        requireNotRecording("allocating routing");
        if (experts > MAX_EXPERTS) {
            throw new IllegalArgumentException("the CUDA backend routes among at most " + MAX_EXPERTS
                    + " experts, the model has " + experts);
        }
        return new CudaRouting(memory, experts, k, capacity);
    }

    @Override
    public synchronized KvCache allocateKvCache(int layers, int contextLength, int kvHeads, int headDim,
            KvCacheType type) {
        int kvDim = kvHeads * headDim;
        makeCurrent();
        requireNotRecording("allocating a KV cache");
        if (layers <= 0 || contextLength <= 0 || kvDim <= 0) {
            throw new IllegalArgumentException("invalid KV cache shape: " + layers + " layers, context "
                    + contextLength + ", " + kvDim + " values per position");
        }
        if (!supportsKvCache(type)) {
            throw new IllegalArgumentException("the CUDA backend stores the KV cache as f16 or f32, not "
                    + type.name().toLowerCase(Locale.ROOT));
        }
        long planeBytes = (long) contextLength * kvDim * (type == KvCacheType.F16 ? 2 : 4);
        long bytes = Math.multiplyExact(planeBytes, 2L * layers);
        CUdeviceptr p = memory.allocate(bytes, DeviceMemory.Use.KV_CACHE, "a " + type + " KV cache of "
                + contextLength + " positions x " + layers + " layers (reduce the context length)");
        return new CudaKvCache(memory, p, layers, contextLength, kvDim, type, planeBytes);
    }

    @Override
    public synchronized void write(float[] src, int srcOffset, Activations dst, int row) {
        makeCurrent();
        requireNotRecording("copying from the host");
        CudaActivations d = act(dst);
        Objects.checkIndex(row, d.capacity());
        Objects.checkFromIndexSize(srcOffset, d.width(), src.length);
        check(JCudaDriver.cuMemcpyHtoD(d.row(row), Pointer.to(src).withByteOffset(4L * srcOffset), 4L * d.width()),
                "copying to " + label);
    }

    @Override
    public synchronized void read(Activations src, int row, float[] dst, int dstOffset) {
        makeCurrent();
        requireNotRecording("reading to the host");
        CudaActivations s = act(src);
        Objects.checkIndex(row, s.capacity());
        Objects.checkFromIndexSize(dstOffset, s.width(), dst.length);
        // waits for every kernel enqueued before: an asynchronous kernel failure surfaces here
        check(JCudaDriver.cuMemcpyDtoH(Pointer.to(dst).withByteOffset(4L * dstOffset), s.row(row), 4L * s.width()),
                readingResults());
    }

    /** One transfer where the rows are contiguous on the device (no padding between them), else row by row. */
    @Override
    public synchronized void writeRows(float[] src, int srcOffset, Activations dst, int row, int n) {
        CudaActivations d = act(dst);
        if (d.pitch != d.width()) {
            Backend.super.writeRows(src, srcOffset, dst, row, n);
            return;
        }
        long floats = contiguousRows(d, row, n, srcOffset, src.length, "copying from the host");
        if (n == 0) {
            return;
        }
        check(JCudaDriver.cuMemcpyHtoD(d.row(row), Pointer.to(src).withByteOffset(4L * srcOffset), 4L * floats),
                "copying to " + label);
    }

    /** One transfer where the rows are contiguous on the device (no padding between them), else row by row. */
    @Override
    public synchronized void readRows(Activations src, int row, int n, float[] dst, int dstOffset) {
        CudaActivations s = act(src);
        if (s.pitch != s.width()) {
            Backend.super.readRows(src, row, n, dst, dstOffset);
            return;
        }
        long floats = contiguousRows(s, row, n, dstOffset, dst.length, "reading to the host");
        if (n == 0) {
            return;
        }
        check(JCudaDriver.cuMemcpyDtoH(Pointer.to(dst).withByteOffset(4L * dstOffset), s.row(row), 4L * floats),
                readingResults());
    }

    /**
     * {@link #writeRows} and {@link #readRows}' checks before their one copy of {@code n} contiguous rows from
     * {@code row} of {@code a}, to or from a host array of {@code length} floats at {@code offset}: the floats copied.
     */
    private long contiguousRows(CudaActivations a, int row, int n, int offset, int length, String what) {
        makeCurrent();
        requireNotRecording(what);
        Objects.checkFromIndexSize(row, n, a.capacity());
        long floats = (long) n * a.width();
        Objects.checkFromIndexSize(offset, Math.toIntExact(floats), length);
        return floats;
    }

    @Override
    public synchronized void copyRows(Activations src, int srcRow, Activations dst, int dstRow, int n) {
        makeCurrent();
        CudaActivations s = act(src);
        CudaActivations d = act(dst);
        requireWidth(d, s.width(), "copy destination");
        Objects.checkFromIndexSize(srcRow, n, s.capacity());
        Objects.checkFromIndexSize(dstRow, n, d.capacity());
        if (n > 0) {
            CUevent start = profiler != null ? profiler.begin() : null;
            check(JCudaDriver.cuMemcpyDtoDAsync(d.row(dstRow), s.row(srcRow), 4L * n * s.pitch, stream),
                    "copying rows on " + label);
            if (start != null) {
                profiler.end(start, "copy_rows", 0, 0);
            }
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        makeCurrent();
        JCudaDriver.cuCtxSynchronize();
        if (profiler != null) {
            profiler.destroy();
            CudaProfile.unregister(this);
        }
        for (CudaStepGraph g : stepGraphs.toArray(CudaStepGraph[]::new)) {
            release(g);
        }
        for (CudaStaging area : stagingAreas.toArray(CudaStaging[]::new)) {
            area.release();
        }
        if (staging != null) {
            for (int i = 0; i < 2; i++) {
                JCudaDriver.cuMemFreeHost(staging.host[i]);
                JCudaDriver.cuEventDestroy(staging.done[i]);
            }
            JCudaDriver.cuStreamDestroy(staging.stream);
            staging = null;
        }
        if (tokenIds != null) {
            memory.free(tokenIds);
        }
        memory.close();
        JCudaDriver.cuStreamDestroy(stream);
        kernels.unload();
        closed = true;
        CURRENT.remove();
        JCudaDriver.cuDevicePrimaryCtxRelease(device);
    }

    // ---------------------------------------------------------------- operations

    @Override
    public synchronized void embed(Weight table, int[] tokens, int offset, int n, Activations out) {
        makeCurrent();
        CudaWeight w = weight(table);
        CudaActivations o = act(out);
        requireRows(n, o);
        requireWidth(o, w.rowLength(), "embedding output");
        requireMatrix(w);
        Objects.checkFromIndexSize(offset, n, tokens.length);
        for (int i = 0; i < n; i++) {
            int token = tokens[offset + i];
            if (token < 0 || token >= w.rows()) {
                throw new IllegalArgumentException("token id " + token + " at index " + (offset + i)
                        + " is outside the vocabulary of " + w.rows() + " (" + w.name() + ")");
            }
        }
        if (n == 0) {
            return;
        }
        Kernels.Format f = kernels.format(w);
        if (capture != null) {
            if (n != 1 || tokens[offset] != capture.token) {
                throw new IllegalStateException("a recorded decode step embeds only its own token");
            }
            capture.tokenLimit = Math.min(capture.tokenLimit, w.rows());
            launch(f.rows(), "rows_" + label(w), 1, 1, 128, w.data(), w.rowBytes(), w.rowLength(), w.rows(),
                    capture.scalars, o.data, o.pitch);
            return;
        }
        if (n > tokenCapacity) {
            if (tokenIds != null) {
                memory.free(tokenIds);
                tokenIds = null;
            }
            int capacity = Math.max(n, 256);
            tokenIds = memory.allocate(4L * capacity, DeviceMemory.Use.ACTIVATIONS, "token ids");
            tokenCapacity = capacity;
        }
        // synchronous: waits for the kernels that still read the previous ids
        check(JCudaDriver.cuMemcpyHtoD(tokenIds, Pointer.to(tokens).withByteOffset(4L * offset), 4L * n),
                "copying token ids to " + label);
        launch(f.rows(), "rows_" + label(w), n, 1, 128,
                w.data(), w.rowBytes(), w.rowLength(), w.rows(), tokenIds, o.data, o.pitch);
    }

    @Override
    public synchronized void matmul(Weight weight, Activations in, Activations out, int n) {
        makeCurrent();
        CudaActivations x = act(in);
        product(weight(weight), x, act(out), n, roundedRows(x, n, false));
    }

    /** {@link #matmul}, reading {@code rounded} (see {@link #roundedRows}) where it is not null and it can. */
    private void product(CudaWeight w, CudaActivations x, CudaActivations o, int n, CUdeviceptr rounded) {
        if (w.experts() != 1) {
            throw new IllegalArgumentException("matmul needs a single matrix, " + w.name() + " stacks " + w.experts());
        }
        requireRows(n, x);
        requireRows(n, o);
        requireWidth(x, w.rowLength(), "input of", w.name());
        requireWidth(o, w.rows(), "output of", w.name());
        requireMatrix(w);
        if (n == 0) {
            return;
        }
        Kernels.Format f = kernels.format(w);
        // A matrix of few rows gives the tiled kernel a few blocks per token tile (the router's 128 rows: one), so
        // it takes the matrix-vector kernels, a row of blocks per token; k and v (512 rows) take the tensor cores
        // from SMALL_MATRICES_ON_TENSOR_CORES_FROM tokens on.
        boolean q8k = q8k(f, w.rowLength(), 1);
        boolean tensorCores = q8k && f.q8kMatmul() != null;
        boolean smallOnTensorCores = tensorCores && SMALL_MATRICES_ON_TENSOR_CORES_FROM > 0
                && n >= SMALL_MATRICES_ON_TENSOR_CORES_FROM;
        boolean matvec = n <= MATVEC_MAX_TOKENS
                || (w.rows() <= MATVEC_MAX_ROWS_ANY_BATCH && n <= MAX_GRID_Y && !smallOnTensorCores);
        if (matvec && rounded != null && q8k) {
            roundedLaunches++;
            noteProduct(w, n);
            launch(f.rounded().matvec(), "mvq_rounded_" + label(w), mvqBlocks(w.rows(), MV_ROWS_PER_BLOCK, n), n,
                    32 * MV_ROWS_PER_BLOCK, w.data(), 0L, w.rowBytes(), w.rowLength(), w.rows(), 1, rounded, 1,
                    o.data, o.pitch);
        } else if (matvec && q8k) {
            noteProduct(w, n);
            launchShared(f.q8kMatvec(), "mvq_" + label(w), mvqBlocks(w.rows(), MV_ROWS_PER_BLOCK, n), n,
                    32 * MV_ROWS_PER_BLOCK, q8kSharedBytes(w.rowLength(), 1), w.data(), 0L, w.rowBytes(),
                    w.rowLength(), w.rows(), 1, x.data, x.pitch, 1, null, o.data, o.pitch);
        } else if (matvec) {
            noteProduct(w, n);
            launch(f.matvec(), "mv_" + label(w), ceilDiv(w.rows(), MV_ROWS_PER_BLOCK), n, 32 * MV_ROWS_PER_BLOCK,
                    w.data(), 0L, w.rowBytes(), w.rowLength(), w.rows(), 1, x.data, x.pitch, 1, null, o.data, o.pitch);
        } else if (tensorCores) {
            // on the tensor cores, with the activations the matrix-vector kernel of this format sees
            Quantized q = quantizedQ8k(x.data, x.pitch, n, w.rowLength());
            noteProduct(w, n);
            launch(f.q8kMatmul(), "mmq_" + label(w), ceilDiv(w.rows(), MMQ_ROWS), gridY(ceilDiv(n, MMQ_TOKENS)),
                    MMQ_THREADS, w.data(), 0L, w.rowBytes(), w.rowLength(), w.rows(), 1, q.values(), q.scales(),
                    q.sums(), o.data, o.pitch, n, null);
        } else {
            // the activations the matrix-vector kernel of this format sees, so that prompts and steps agree
            CUdeviceptr input = q8k ? roundedQ8k(x, n) : x.data;
            noteProduct(w, n);
            launch(f.matmul(), "mm_" + label(w), ceilDiv(w.rows(), MM_ROWS), gridY(ceilDiv(n, MM_TOKENS)), 256,
                    w.data(), 0L, w.rowBytes(), w.rowLength(), w.rows(), 1, input, x.pitch, o.data, o.pitch, n, null);
        }
    }

    /**
     * For a few tokens, matrices of one Q8_K format and row length share one launch (mvq_multi): a layer's
     * query, key and value projections, of which the last two are small, cost one launch and one wait instead of
     * three (two where the third has another format). Anything else takes {@link #matmul} one matrix at a time.
     */
    @Override
    public synchronized void matmul3(Weight w0, Activations out0, Weight w1, Activations out1, Weight w2,
                                     Activations out2, Activations in, int n) {
        makeCurrent();
        CudaWeight a = weight(w0);
        CudaWeight b = weight(w1);
        CudaWeight c = weight(w2);
        CudaActivations x = act(in);
        CUdeviceptr rounded = roundedRows(x, n, false);
        Kernels.Format f = kernels.format(a);
        boolean fuseFirstTwo = FUSE && n > 0 && n <= MATVEC_MAX_TOKENS && multiCandidate(a, x) && multiCandidate(b, x)
                && kernels.format(b) == f && q8k(f, x.width(), 1);
        if (!fuseFirstTwo) {
            product(a, x, act(out0), n, rounded);
            product(b, x, act(out1), n, rounded);
            product(c, x, act(out2), n, rounded);
            return;
        }
        boolean fuseAllThree = multiCandidate(c, x) && kernels.format(c) == f;
        CudaActivations o0 = act(out0);
        CudaActivations o1 = act(out1);
        requireRows(n, x);
        requireRows(n, o0);
        requireRows(n, o1);
        requireWidth(o0, a.rows(), "output of", a.name());
        requireWidth(o1, b.rows(), "output of", b.name());
        CudaActivations o2 = null;
        if (fuseAllThree) {
            o2 = act(out2);
            requireRows(n, o2);
            requireWidth(o2, c.rows(), "output of", c.name());
        }
        int blocks0 = mvqBlocks(a.rows(), MV_ROWS_PER_BLOCK, n);
        int blocks1 = mvqBlocks(b.rows(), MV_ROWS_PER_BLOCK, n);
        int blocks2 = fuseAllThree ? mvqBlocks(c.rows(), MV_ROWS_PER_BLOCK, n) : 0;
        if (profiler != null) {
            CudaWeight[] ws = fuseAllThree ? new CudaWeight[] {a, b, c} : new CudaWeight[] {a, b};
            long bytes = 0;
            long flops = 0;
            StringBuilder name = new StringBuilder();
            for (CudaWeight w : ws) {
                bytes += w.rowBytes() * w.rows();
                flops += 2L * w.rows() * w.rowLength() * n;
                name.append(name.isEmpty() ? "" : "+").append(role(w));
            }
            note(name.toString(), bytes, flops);
        }
        // the third matrix's arguments are null and 0 rows when it goes alone (no block of the grid reaches it)
        Object[] third = fuseAllThree
                ? new Object[] {c.data(), c.rowBytes(), c.rows(), o2.data, o2.pitch}
                : new Object[] {null, 0L, 0, null, 0};
        if (rounded != null) {
            roundedLaunches++;
            launch(f.rounded().matvecMulti(), "mvq_multi_rounded_" + label(a), blocks0 + blocks1 + blocks2, n,
                    32 * MV_ROWS_PER_BLOCK, a.data(), a.rowBytes(), a.rows(), o0.data, o0.pitch, blocks0, b.data(),
                    b.rowBytes(), b.rows(), o1.data, o1.pitch, blocks1, third[0], third[1], third[2], third[3],
                    third[4], x.width(), rounded);
        } else {
            launchShared(f.q8kMatvecMulti(), "mvq_multi_" + label(a), blocks0 + blocks1 + blocks2, n,
                    32 * MV_ROWS_PER_BLOCK, q8kSharedBytes(x.width(), 1), a.data(), a.rowBytes(), a.rows(), o0.data,
                    o0.pitch, blocks0, b.data(), b.rowBytes(), b.rows(), o1.data, o1.pitch, blocks1, third[0],
                    third[1], third[2], third[3], third[4], x.width(), x.data, x.pitch);
        }
        if (!fuseAllThree) {
            product(c, x, act(out2), n, rounded);
        }
    }

    /** A single matrix of a format with Q8_K kernels whose rows take {@code x}. */
    private boolean multiCandidate(CudaWeight w, CudaActivations x) {
        return w.experts() == 1 && w.rowLength() == x.width() && kernels.format(w).hasQ8k()
                && isMatrix(w);
    }

    /**
     * The router's product and the choice of experts in one launch (route_f32) for a float32 router of at most
     * {@link #MAX_EXPERTS} experts, the case of the Qwen3 MoE models; the same results as
     * {@link #matmul} then {@link #routeSoftmaxTopK}, which other routers take.
     */
    @Override
    public synchronized void route(Weight router, Activations in, Activations logits, int n, ExpertRouting routing) {
        makeCurrent();
        routedAt = operations;
        CudaWeight w = weight(router);
        CudaActivations x = act(in);
        CudaActivations l = act(logits);
        CudaRouting r = routing(routing);
        // the routing holds at most MAX_EXPERTS experts (allocateRouting), the most route_f32's top-k takes
        if (!FUSE || w.format() != GgmlType.F32 || w.experts() != 1 || !isMatrix(w) || w.rows() != r.experts()
                || w.rowLength() != x.width() || n > r.capacity() || n > MAX_GRID_Y) {
            Backend.super.route(router, in, logits, n, routing);
            return;
        }
        requireRows(n, x);
        requireRows(n, l);
        requireWidth(l, r.experts(), "router logits");
        if (n == 0) {
            return;
        }
        noteProduct(w, n);
        int warps = n <= MATVEC_MAX_TOKENS ? routeWarps : MV_ROWS_PER_BLOCK;
        launch(warps == 1 ? kernels.routeF32OneWarp : kernels.routeF32, warps == 1 ? "route_f32_w1" : "route_f32",
                ceilDiv(w.rows(), warps), n, 32 * warps, w.data(), w.rowBytes(), w.rowLength(), w.rows(), x.data,
                x.pitch, l.data, l.pitch, r.k(), r.ids, r.weights, r.done);
    }

    @Override
    public synchronized void rmsNorm(Activations in, Weight gain, float eps, Activations out, int n) {
        makeCurrent();
        CudaActivations x = act(in);
        CudaActivations o = act(out);
        CudaWeight g = weight(gain);
        if (!g.isVector()) {
            throw new IllegalArgumentException("tensor " + g.name() + " is a matrix, not a vector");
        }
        int group = g.rowLength();
        requireRows(n, x);
        requireRows(n, o);
        if (x.width() % group != 0 || o.width() != x.width()) {
            throw new IllegalArgumentException("rms norm with gain " + g.name() + " of " + group
                    + " values does not fit rows of " + x.width() + " -> " + o.width());
        }
        int groups = x.width() / group;
        if (n == 0) {
            return;
        }
        if (profiler != null) {
            note(groups == 1 ? "" : "heads", 0, 0);
        }
        launch(kernels.rmsNorm, "rms_norm", Math.multiplyExact(n, groups), 1, 256,
                x.data, x.pitch, g.data(), group, groups, eps, o.data, o.pitch);
    }

    @Override
    public synchronized void rope(Activations in, int heads, Rope rope, int startPos, int n) {
        makeCurrent();
        CudaActivations x = act(in);
        requireRows(n, x);
        if (heads <= 0 || x.width() % heads != 0 || x.width() / heads < rope.dims()) {
            throw new IllegalArgumentException("cannot apply RoPE over " + rope.dims() + " dims to " + heads
                    + " heads in rows of " + x.width());
        }
        if (rope.dims() > MAX_ROPE_DIMS) {
            throw new IllegalArgumentException("the CUDA backend rotates at most " + MAX_ROPE_DIMS
                    + " dimensions per head, got " + rope.dims());
        }
        if (n == 0) {
            return;
        }
        Rope.AngleConstants c = rope.angleConstants();
        launch(kernels.rope, "rope", n, 1, 256, x.data, x.pitch, heads, x.width() / heads, rope.dims(),
                rope.style() == Rope.Style.NEOX ? 1 : 0, relativeStart(startPos), positionPointer(),
                c.thetaScale(), rope.freqScale(),
                rope.extFactor(), c.rampLow(), c.rampHigh(), c.magnitude());
    }

    @Override
    public synchronized void storeKv(KvCache cache, int layer, Activations k, Activations v, int startPos, int n) {
        makeCurrent();
        CudaKvCache c = kv(cache);
        CudaActivations ka = act(k);
        CudaActivations va = act(v);
        requireRows(n, ka);
        requireRows(n, va);
        requireWidth(ka, c.kvDim(), "keys");
        requireWidth(va, c.kvDim(), "values");
        Objects.checkIndex(layer, c.layers());
        requirePositions(c, startPos, n);
        if (n == 0) {
            return;
        }
        boolean half = c.type() == KvCacheType.F16;
        recordPositions(c, startPos, n);
        launch(half ? kernels.storeKvF16 : kernels.storeKvF32, "store_kv", n, 1, 128,
                c.keys(layer), c.values(layer), ka.data, ka.pitch, va.data, va.pitch, c.kvDim(),
                relativeStart(startPos), positionPointer());
    }

    @Override
    public synchronized void attention(Activations query, KvCache cache, int layer, AttentionShape shape, int startPos,
                                       int n, Activations output) {
        makeCurrent();
        CudaKvCache c = kv(cache);
        CudaActivations q = act(query);
        CudaActivations o = act(output);
        requireRows(n, q);
        requireRows(n, o);
        requireWidth(q, shape.qDim(), "attention query");
        requireWidth(o, shape.qDim(), "attention output");
        if (c.kvDim() != shape.kvDim()) {
            throw new IllegalArgumentException("KV cache holds " + c.kvDim() + " values per position, attention expects "
                    + shape.kvDim());
        }
        if (shape.headDim() > MAX_HEAD_DIM) {
            throw new IllegalArgumentException("the CUDA backend's attention handles heads of at most " + MAX_HEAD_DIM
                    + " values, got " + shape.headDim());
        }
        Objects.checkIndex(layer, c.layers());
        requirePositions(c, startPos, n);
        if (n == 0) {
            return;
        }
        boolean half = c.type() == KvCacheType.F16;
        recordPositions(c, startPos, n);
        if (profiler != null) {
            note("", 2L * (startPos + n) * c.kvDim() * (half ? 2 : 4), 0);
        }
        // (o.rounded implies a width of whole 256-value groups, so an even number of heads of 128; kept as guards)
        if (DECODE_ATTENTION && n <= MATVEC_MAX_TOKENS && attentionRounds && roundOnce && o.rounded != null
                && shape.headDim() == 128 && shape.heads() % 2 == 0 && n <= CudaActivations.roundedRows(o.capacity())) {
            launch(half ? kernels.attentionDecodeRoundedF16 : kernels.attentionDecodeRoundedF32,
                    "attention_decode_rounded", shape.heads(), n, 32 * ATTENTION_DECODE_WARPS, q.data, q.pitch,
                    c.keys(layer), c.values(layer), c.kvDim(), shape.heads() / shape.kvHeads(), shape.scale(),
                    relativeStart(startPos), positionPointer(), o.data, o.pitch, o.rounded, o.groupCounters());
            roundedBuffer = o;
            roundedCount = n;
            roundedAt = operations;
            return;
        }
        if (DECODE_ATTENTION && n <= MATVEC_MAX_TOKENS) {
            launch(half ? kernels.attentionDecodeF16 : kernels.attentionDecodeF32, "attention_decode", shape.heads(),
                    n, 32 * ATTENTION_DECODE_WARPS, q.data, q.pitch, c.keys(layer), c.values(layer), c.kvDim(),
                    shape.headDim(), shape.heads() / shape.kvHeads(), shape.scale(), relativeStart(startPos),
                    positionPointer(), o.data, o.pitch);
            return;
        }
        if (tiledAttention && shape.headDim() == 128 && n >= ATTENTION_TILE_ROWS) {
            launch(half ? kernels.attentionTiledF16 : kernels.attentionTiledF32, "attention_tiled", shape.heads(),
                    gridY(ceilDiv(n, ATTENTION_TILE_ROWS)), ATTENTION_TILE_THREADS, q.data, q.pitch, c.keys(layer),
                    c.values(layer), c.kvDim(), shape.heads() / shape.kvHeads(), shape.scale(),
                    relativeStart(startPos), positionPointer(), n, o.data, o.pitch);
            return;
        }
        launch(half ? kernels.attentionF16 : kernels.attentionF32, "attention", shape.heads(), gridY(n), 128,
                q.data, q.pitch, c.keys(layer), c.values(layer), c.kvDim(), shape.headDim(),
                shape.heads() / shape.kvHeads(), shape.scale(), relativeStart(startPos), positionPointer(),
                o.data, o.pitch);
    }

    @Override
    public synchronized void add(Activations accumulator, Activations in, int n) {
        makeCurrent();
        CudaActivations acc = act(accumulator);
        CudaActivations x = act(in);
        requireRows(n, acc);
        requireRows(n, x);
        requireWidth(x, acc.width(), "addend");
        elementwise(kernels.add, "add_inplace", acc, x, n);
    }

    @Override
    public synchronized void addRmsNorm(Activations accumulator, Activations in, Weight gain, float eps,
                                        Activations out, int n) {
        makeCurrent();
        CudaActivations acc = act(accumulator);
        CudaActivations x = act(in);
        CudaActivations o = act(out);
        CudaWeight g = weight(gain);
        requireRows(n, acc);
        requireRows(n, x);
        requireRows(n, o);
        requireWidth(x, acc.width(), "addend");
        if (!g.isVector() || g.rowLength() != acc.width() || o.width() != acc.width()) {
            Backend.super.addRmsNorm(accumulator, in, gain, eps, out, n);  // per-head groups: the two kernels
            return;
        }
        if (n > 0 && roundOnce && n <= MATVEC_MAX_TOKENS && o.rounded != null) {
            launch(kernels.addRmsNormRounded, "add_rms_norm_rounded", n, 1, 256,
                    acc.data, acc.pitch, x.data, x.pitch, g.data(), acc.width(), eps, o.data, o.pitch, o.rounded);
            roundedBuffer = o;
            roundedCount = n;
            roundedAt = operations;
        } else if (n > 0) {
            launch(kernels.addRmsNorm, "add_rms_norm", n, 1, 256, acc.data, acc.pitch, x.data, x.pitch, g.data(),
                    acc.width(), eps, o.data, o.pitch);
        }
    }

    @Override
    public synchronized void rmsNormRope(Activations in, Weight gain, float eps, int heads, Rope rope, int startPos,
                                         int n) {
        makeCurrent();
        CudaActivations x = act(in);
        CudaWeight g = weight(gain);
        requireRows(n, x);
        if (!g.isVector() || heads <= 0 || (long) heads * g.rowLength() != x.width() || rope.dims() > g.rowLength()
                || rope.dims() > MAX_ROPE_DIMS) {
            Backend.super.rmsNormRope(in, gain, eps, heads, rope, startPos, n);  // the checks and messages of each
            return;
        }
        if (n == 0) {
            return;
        }
        Rope.AngleConstants c = rope.angleConstants();
        if (profiler != null) {
            note(heads + " heads", 0, 0);
        }
        launch(kernels.rmsNormRope, "rms_norm_rope", Math.multiplyExact(n, heads), 1, 256, x.data, x.pitch, g.data(),
                heads, g.rowLength(), eps, rope.dims(), rope.style() == Rope.Style.NEOX ? 1 : 0,
                relativeStart(startPos), positionPointer(), c.thetaScale(), rope.freqScale(), rope.extFactor(),
                c.rampLow(), c.rampHigh(), c.magnitude());
    }

    @Override
    public synchronized void normRopeStoreKv(Activations q, Weight qNorm, Activations k, Weight kNorm, Activations v,
                                             float eps, int heads, int kvHeads, Rope rope, KvCache cache, int layer,
                                             int startPos, int n) {
        makeCurrent();
        CudaActivations qa = act(q);
        CudaActivations ka = act(k);
        CudaActivations va = act(v);
        CudaWeight qg = weight(qNorm);
        CudaWeight kg = weight(kNorm);
        CudaKvCache c = kv(cache);
        int headDim = qg.rowLength();
        if (!qg.isVector() || !kg.isVector() || kg.rowLength() != headDim || heads <= 0 || kvHeads <= 0
                || (long) heads * headDim != qa.width() || (long) kvHeads * headDim != ka.width()
                || ka.width() != c.kvDim() || va.width() != c.kvDim() || rope.dims() > headDim
                || rope.dims() > MAX_ROPE_DIMS) {
            // the separate operations, with the checks and messages of each
            Backend.super.normRopeStoreKv(q, qNorm, k, kNorm, v, eps, heads, kvHeads, rope, cache, layer, startPos, n);
            return;
        }
        requireRows(n, qa);
        requireRows(n, ka);
        requireRows(n, va);
        Objects.checkIndex(layer, c.layers());
        requirePositions(c, startPos, n);
        if (n == 0) {
            return;
        }
        recordPositions(c, startPos, n);
        Rope.AngleConstants a = rope.angleConstants();
        if (profiler != null) {
            note(heads + "+" + kvHeads + " heads", 0, 0);
        }
        launch(c.type() == KvCacheType.F16 ? kernels.normRopeStoreF16 : kernels.normRopeStoreF32,
                "norm_rope_store_kv", Math.multiplyExact(n, heads + kvHeads), 1, 256, qa.data, qa.pitch, qg.data(),
                heads, ka.data, ka.pitch, kg.data(), kvHeads, va.data, va.pitch, c.keys(layer), c.values(layer),
                headDim, eps, rope.dims(), rope.style() == Rope.Style.NEOX ? 1 : 0, relativeStart(startPos),
                positionPointer(), a.thetaScale(), rope.freqScale(), rope.extFactor(), a.rampLow(), a.rampHigh(),
                a.magnitude());
    }

    @Override
    public synchronized void siluMul(Activations gate, Activations up, int n) {
        makeCurrent();
        CudaActivations g = act(gate);
        CudaActivations u = act(up);
        requireRows(n, g);
        requireRows(n, u);
        requireWidth(u, g.width(), "up projection");
        elementwise(kernels.siluMul, "silu_mul", g, u, n);
    }

    /** {@code f(a, b)} over whole rows (padding included, which stays zero) of two buffers of one width. */
    private void elementwise(CUfunction f, String name, CudaActivations a, CudaActivations b, int n) {
        long count = (long) n * a.pitch;
        if (count > 0) {
            launch(f, name, Math.toIntExact(ceilDiv(count, 256)), 1, 256, a.data, b.data, count);
        }
    }

    @Override
    public synchronized void routeSoftmaxTopK(Activations logits, int n, ExpertRouting routing) {
        makeCurrent();
        CudaActivations l = act(logits);
        CudaRouting r = routing(routing);
        requireRows(n, l);
        requireWidth(l, r.experts(), "router logits");
        if (n > r.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " exceeds the routing capacity " + r.capacity());
        }
        if (n > 0) {
            launch(kernels.routeTopK, "route_topk", n, 1, 32, l.data, l.pitch, r.experts(), r.k(), r.ids, r.weights);
        }
    }

    @Override
    public synchronized void experts(Weight gateW, Weight upW, Weight downW, Activations input, ExpertRouting routing,
                                     ExpertBuffers buffers, Activations output, int n) {
        makeCurrent();
        CudaWeight gate = weight(gateW);
        CudaWeight up = weight(upW);
        CudaWeight down = weight(downW);
        CudaActivations x = act(input);
        CudaActivations xs = act(buffers.input());
        CudaActivations g = act(buffers.gate());
        CudaActivations u = act(buffers.up());
        CudaActivations y = act(buffers.output());
        CudaActivations out = act(output);
        CudaRouting r = routing(routing);
        int k = r.k();
        int ffn = gate.rows();
        int embd = x.width();
        int experts = r.experts();
        BackendChecks.requireExperts(gate, up, down, x, r, buffers, out, n);
        requireMatrix(gate);
        requireMatrix(up);
        requireMatrix(down);
        if (n > r.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " exceeds the routing capacity " + r.capacity());
        }
        if (n == 0) {
            return;
        }
        int assignments = n * k;
        Kernels.Format fg = kernels.format(gate);
        Kernels.Format fu = kernels.format(up);
        Kernels.Format fd = kernels.format(down);
        if (assignments <= DIRECT_EXPERT_ASSIGNMENTS) {
            int blocks = ceilDiv(ffn, MV_ROWS_PER_BLOCK);
            boolean roundsOnce = q8k(fd, ffn, k) && combineRoundsOnce && g.rounded != null
                    && assignments <= CudaActivations.roundedRows(g.capacity());
            if (fg == fu) {
                if (profiler != null) {
                    note(role(gate) + "+" + role(up), (gate.rowBytes() + up.rowBytes()) * ffn * assignments,
                            4L * ffn * embd * assignments);
                }
                CUdeviceptr rounded = roundedRows(x, n, true);
                if (rounded != null && q8k(fg, embd, 1)) {
                    roundedLaunches++;
                    Object[] args = {gate.data(), up.data(), gate.expertStride(), gate.rowBytes(), embd, ffn, experts,
                            rounded, k, r.ids, g.data, g.pitch};
                    boolean o8 = pairOccupancy == 8;
                    launch(o8 ? fg.rounded().matvecPairO8() : fg.rounded().matvecPair(),
                            (o8 ? "mvq_pair_rounded_o8_" : "mvq_pair_rounded_") + label(gate),
                            mvqBlocks(ffn, MV_ROWS_PER_BLOCK, assignments), assignments, 32 * MV_ROWS_PER_BLOCK, args);
                } else if (q8k(fg, embd, 1)) {
                    launchShared(fg.q8kMatvecPair(), "mvq_pair_" + label(gate),
                            mvqBlocks(ffn, MV_ROWS_PER_BLOCK, assignments), assignments,
                            32 * MV_ROWS_PER_BLOCK, q8kSharedBytes(embd, 1), gate.data(), up.data(),
                            gate.expertStride(), gate.rowBytes(), embd, ffn, experts, x.data, x.pitch, k, r.ids,
                            g.data, g.pitch);
                } else {
                    launch(fg.matvecPair(), "mv_pair_" + label(gate), blocks, assignments, 32 * MV_ROWS_PER_BLOCK,
                            gate.data(), up.data(), gate.expertStride(), gate.rowBytes(), embd, ffn, experts,
                            x.data, x.pitch, k, r.ids, g.data, g.pitch);
                }
            } else {
                if (profiler != null) {
                    note(role(gate), gate.rowBytes() * ffn * assignments, 2L * ffn * embd * assignments);
                }
                launch(fg.matvec(), "mv_" + label(gate), blocks, assignments, 32 * MV_ROWS_PER_BLOCK,
                        gate.data(), gate.expertStride(), gate.rowBytes(), embd, ffn, experts,
                        x.data, x.pitch, k, r.ids, g.data, g.pitch);
                if (profiler != null) {
                    note(role(up), up.rowBytes() * ffn * assignments, 2L * ffn * embd * assignments);
                }
                launch(fu.matvec(), "mv_" + label(up), blocks, assignments, 32 * MV_ROWS_PER_BLOCK,
                        up.data(), up.expertStride(), up.rowBytes(), embd, ffn, experts,
                        x.data, x.pitch, k, r.ids, u.data, u.pitch);
                elementwise(kernels.siluMul, "silu_mul", g, u, assignments);
            }
            if (roundsOnce) {
                launch(kernels.roundRows, "round_rows", assignments, 1, 256, g.data, g.pitch, ffn, g.rounded);
            }
            if (profiler != null) {
                note(role(down), down.rowBytes() * embd * assignments, 2L * ffn * embd * assignments);
            }
            if (roundsOnce) {
                roundedLaunches++;
                launch(fd.q8kCombine().rounded(), "mvq_combine_rounded_" + label(down),
                        mvqBlocks(embd, MVQ_COMBINE_ROWS_PER_BLOCK, n), n, 32 * MVQ_COMBINE_ROWS_PER_BLOCK,
                        down.data(), down.expertStride(), down.rowBytes(), ffn, embd, experts, g.rounded, r.ids,
                        r.weights, k, out.data, out.pitch);
            } else if (q8k(fd, ffn, k)) {
                launchShared(fd.q8kCombine().plain(), "mvq_combine_" + label(down),
                        mvqBlocks(embd, MVQ_COMBINE_ROWS_PER_BLOCK, n), n, 32 * MVQ_COMBINE_ROWS_PER_BLOCK,
                        q8kSharedBytes(ffn, k), down.data(), down.expertStride(), down.rowBytes(), ffn, embd, experts,
                        g.data, g.pitch, r.ids, r.weights, k, out.data, out.pitch);
            } else {
                launch(fd.matvecCombine(), "mv_combine_" + label(down), ceilDiv(embd, MV_ROWS_PER_BLOCK), n,
                        32 * MV_ROWS_PER_BLOCK, down.data(), down.expertStride(), down.rowBytes(), ffn, embd, experts,
                        g.data, g.pitch, r.ids, r.weights, k, out.data, out.pitch);
            }
            return;
        }
        // Larger batches: group the assignments by expert on the device, then one tiled product per expert run.
        int tiles = gridY(r.maxTiles(assignments));
        launch(kernels.moeGroup, "moe_group", 1, 1, 256, r.ids, assignments, experts, r.order, r.position, r.tiles,
                tiles, CudaRouting.TILE_ROWS);
        launch(kernels.moeGather, "moe_gather", assignments, 1, 256, x.data, x.pitch, r.order, k, assignments,
                xs.data, xs.pitch, embd);
        // round as the one-token kernels do (mvq_pair, mvq_combine), so that prompts and steps agree: into int8
        // for the tensor-core kernels, in place for the others
        boolean gateUpQ8k = fg == fu && q8k(fg, embd, 1);
        Quantized qx = null;
        if (gateUpQ8k && fg.q8kMatmul() != null) {
            qx = quantizedQ8k(xs.data, xs.pitch, assignments, embd);
        } else if (gateUpQ8k) {
            roundQ8k(xs.data, xs.pitch, assignments, embd, xs.data, xs.pitch);
        }
        if (profiler != null) {  // every expert's weights, once: an upper bound for a batch this large
            note(role(gate), gate.rowBytes() * ffn * experts, 2L * ffn * embd * assignments);
        }
        expertProduct(fg, gate, embd, ffn, experts, xs, qx, g, assignments, tiles, r);
        if (profiler != null) {
            note(role(up), up.rowBytes() * ffn * experts, 2L * ffn * embd * assignments);
        }
        expertProduct(fu, up, embd, ffn, experts, xs, qx, u, assignments, tiles, r);
        elementwise(kernels.siluMul, "silu_mul", g, u, assignments);
        Quantized qg = null;
        if (q8k(fd, ffn, k) && fd.q8kMatmul() != null) {
            qg = quantizedQ8k(g.data, g.pitch, assignments, ffn);
        } else if (q8k(fd, ffn, k)) {
            roundQ8k(g.data, g.pitch, assignments, ffn, g.data, g.pitch);
        }
        if (profiler != null) {
            note(role(down), down.rowBytes() * embd * experts, 2L * ffn * embd * assignments);
        }
        expertProduct(fd, down, ffn, embd, experts, g, qg, y, assignments, tiles, r);
        launch(kernels.moeCombine, "moe_combine", n, 1, 256, y.data, y.pitch, r.position, r.weights, k,
                out.data, out.pitch, embd);
    }

    /**
     * One tiled product per expert run of the grouped assignments: {@code y = W_e x} for the rows of {@code x}
     * (of {@code k} values) in each tile, on the tensor cores from {@code q} when the input was rounded to int8.
     */
    private void expertProduct(Kernels.Format f, CudaWeight w, int k, int rows, int experts, CudaActivations x,
                               Quantized q, CudaActivations y, int assignments, int tiles, CudaRouting r) {
        if (q != null) {
            launch(f.q8kMatmul(), "mmq_" + label(w), ceilDiv(rows, MMQ_ROWS), tiles, MMQ_THREADS, w.data(),
                    w.expertStride(), w.rowBytes(), k, rows, experts, q.values(), q.scales(), q.sums(), y.data,
                    y.pitch, assignments, r.tiles);
        } else {
            launch(f.matmul(), "mm_" + label(w), ceilDiv(rows, MM_ROWS), tiles, 256, w.data(), w.expertStride(),
                    w.rowBytes(), k, rows, experts, x.data, x.pitch, y.data, y.pitch, assignments, r.tiles);
        }
    }

    /** Copies the first {@code n} tokens' routing to the host (tests and diagnostics; the model never needs it). */
    synchronized void readRouting(ExpertRouting routing, int n, int[] ids, float[] weights) {
        makeCurrent();
        CudaRouting r = routing(routing);
        int slots = n * r.k();
        check(JCudaDriver.cuMemcpyDtoH(Pointer.to(ids), r.ids, 4L * slots), "reading the routing from " + label);
        check(JCudaDriver.cuMemcpyDtoH(Pointer.to(weights), r.weights, 4L * slots), "reading the routing from " + label);
    }

    // ---------------------------------------------------------------- decode graphs

    /** What the operations of a step being recorded need: the device scalars and the limits they imply. */
    private static final class Capture {
        final CUdeviceptr scalars;
        final int token;
        final int position;
        int tokenLimit = Integer.MAX_VALUE;
        int minPosition = 0;
        int maxPosition = Integer.MAX_VALUE;

        Capture(CUdeviceptr scalars, int token, int position) {
            this.scalars = scalars;
            this.token = token;
            this.position = position;
        }
    }

    /** Whether decode steps are recorded as graphs ({@code moe4j.cuda.graphs}, off in sync mode). */
    static boolean graphsEnabled() {
        return GRAPHS && !SYNC && !CudaProfile.ENABLED;
    }

    @Override
    public synchronized StepRecorder stepRecorder() {
        makeCurrent();
        CudaStepGraph g = new CudaStepGraph(this);
        stepGraphs.add(g);
        return g;
    }

    /** The start position to pass a kernel: relative to the step's position while recording. */
    private int relativeStart(int startPos) {
        return capture == null ? startPos : startPos - capture.position;
    }

    /** The device int a kernel adds to its start position: the step's position while recording, else none. */
    private CUdeviceptr positionPointer() {
        return capture == null ? null : capture.scalars.withByteOffset(4);
    }

    /** While recording: the positions at which a replay still stays inside {@code cache}. */
    private void recordPositions(CudaKvCache cache, int startPos, int n) {
        if (capture != null) {
            int relative = startPos - capture.position;
            capture.minPosition = Math.max(capture.minPosition, -relative);
            capture.maxPosition = Math.min(capture.maxPosition, cache.contextLength() - relative - n);
        }
    }

    /** Runs or replays a decode step of {@code g} (see {@link StepRecorder#run}). */
    synchronized void step(CudaStepGraph g, Object key, int token, int position, Runnable step) {
        makeCurrent();
        if (!graphsEnabled() || g.disabled != null || !stepGraphs.contains(g)) {
            step.run();
            return;
        }
        if (g.exec == null || !g.key.equals(key)) {
            destroyGraph(g);
            if (!record(g, key, token, position, step)) {
                step.run();
                return;
            }
        } else {
            if (token < 0 || token >= g.tokenLimit) {
                throw new IllegalArgumentException("token id " + token + " is outside the vocabulary of "
                        + g.tokenLimit);
            }
            if (position < g.minPosition || position > g.maxPosition) {
                throw new IllegalArgumentException("position " + position + " is outside the KV cache (the step"
                        + " can run at positions " + g.minPosition + ".." + g.maxPosition + ")");
            }
        }
        check(JCudaDriver.cuEventSynchronize(g.copied), "waiting for the previous decode step on " + label);
        g.setScalars(token, position);
        check(JCudaDriver.cuMemcpyHtoDAsync(g.scalars, g.host, 8, stream), "copying the token to " + label);
        check(JCudaDriver.cuEventRecord(g.copied, stream), "recording an event on " + label);
        check(JCudaDriver.cuGraphLaunch(g.exec, stream), "launching the decode graph on " + label);
        if (SYNC) {
            check(JCudaDriver.cuCtxSynchronize(), "the decode graph on " + label);
        }
    }

    /**
     * Records {@code step} into a graph of {@code g}; false (and {@code g} disabled) when the driver
     * refuses, so that the caller runs it directly. Errors of the step itself are thrown.
     */
    private boolean record(CudaStepGraph g, Object key, int token, int position, Runnable step) {
        if (g.scalars == null) {
            g.scalars = memory.allocate(8, DeviceMemory.Use.ACTIVATIONS, "decode step scalars");
            g.host = new Pointer();
            check(JCudaDriver.cuMemAllocHost(g.host, 8), "allocating pinned host memory on " + label);
            g.copied = new CUevent();
            check(JCudaDriver.cuEventCreate(g.copied, 0), "creating an event on " + label);
        }
        int begun;
        try {
            begun = JCudaDriver.cuStreamBeginCapture(stream, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
        } catch (LinkageError e) {  // a JCuda native library without the graph API
            g.disabled = "cuStreamBeginCapture is not available: " + e;
            return false;
        }
        if (begun != CUresult.CUDA_SUCCESS) {
            g.disabled = "cuStreamBeginCapture failed: " + CUresult.stringFor(begun);
            return false;
        }
        Capture c = new Capture(g.scalars, token, position);
        capture = c;
        RuntimeException failure = null;
        try {
            step.run();
        } catch (RuntimeException e) {
            failure = e;
        } finally {
            capture = null;
        }
        CUgraph graph = new CUgraph();
        int ended = JCudaDriver.cuStreamEndCapture(stream, graph);
        if (failure != null || ended != CUresult.CUDA_SUCCESS) {
            if (ended == CUresult.CUDA_SUCCESS) {
                JCudaDriver.cuGraphDestroy(graph);
            }
            if (failure != null && !(failure instanceof CudaException)) {
                throw failure;
            }
            g.disabled = failure != null ? failure.getMessage()
                    : "cuStreamEndCapture failed: " + CUresult.stringFor(ended);
            return false;
        }
        CUgraphExec exec = new CUgraphExec();
        int instantiated = JCudaDriver.cuGraphInstantiate(exec, graph, 0);
        if (instantiated != CUresult.CUDA_SUCCESS) {
            JCudaDriver.cuGraphDestroy(graph);
            g.disabled = "cuGraphInstantiate failed: " + CUresult.stringFor(instantiated);
            return false;
        }
        g.graph = graph;
        g.exec = exec;
        g.key = key;
        g.tokenLimit = c.tokenLimit;
        g.minPosition = c.minPosition;
        g.maxPosition = c.maxPosition;
        return true;
    }

    private static void destroyGraph(CudaStepGraph g) {
        if (g.exec != null) {
            JCudaDriver.cuGraphExecDestroy(g.exec);
            g.exec = null;
        }
        if (g.graph != null) {
            JCudaDriver.cuGraphDestroy(g.graph);
            g.graph = null;
        }
        g.key = null;
    }

    /** Frees what {@code g} holds; nothing once this backend is closed (its context freed everything). */
    synchronized void release(CudaStepGraph g) {
        if (closed || !stepGraphs.remove(g)) {
            return;
        }
        makeCurrent();
        if (g.copied != null) {
            JCudaDriver.cuEventSynchronize(g.copied);
        }
        destroyGraph(g);
        if (g.scalars != null) {
            memory.free(g.scalars);
            JCudaDriver.cuMemFreeHost(g.host);
            JCudaDriver.cuEventDestroy(g.copied);
            g.scalars = null;
        }
    }

    // ---------------------------------------------------------------- launching

    /**
     * Whether a matrix-vector product of {@code rowLength}-value rows with {@code inputs} activation rows per
     * block (the experts of a token for the down projection) takes the Q8_K kernels: the format has them, rows
     * are whole 256-value blocks, and the rounded activations fit the default shared memory.
     */
    private static boolean q8k(Kernels.Format f, int rowLength, int inputs) {
        return f.hasQ8k() && rowLength % 256 == 0 && q8kSharedBytes(rowLength, inputs) <= MAX_DEFAULT_SHARED_BYTES;
    }

    /** Shared memory for {@code inputs} rows of {@code rowLength} activations rounded to Q8_K (layout: q8k.cuh). */
    private static long q8kSharedBytes(int rowLength, int inputs) {
        return (long) inputs * (rowLength + rowLength / 4 + rowLength / 64);
    }

    /**
     * Blocks along x of a grid-stride Q8_K matrix-vector kernel with {@code gridY} rows of blocks: one per
     * {@code rowsPerBlock} rows, but at most {@link #MVQ_BLOCKS_PER_MULTIPROCESSOR} per multiprocessor over all
     * the grid's rows, so that a large matrix (the LM head) does not round its activations again in every block of
     * a few rows. (Capping the grid at the blocks resident at once made no difference on an H100.)
     */
    private int mvqBlocks(int rows, int rowsPerBlock, int gridY) {
        return Math.min(ceilDiv(rows, rowsPerBlock),
                Math.max(1, info.multiprocessors() * MVQ_BLOCKS_PER_MULTIPROCESSOR / gridY));
    }

    /**
     * {@code x}'s first {@code n} rows rounded to Q8_K (and decoded) in a scratch buffer of the backend, grown on
     * demand: the input of a batched product whose format's matrix-vector kernel rounds its activations so.
     */
    private CUdeviceptr roundedQ8k(CudaActivations x, int n) {
        long bytes = 4L * n * x.pitch;
        if (bytes > roundedBytes) {
            if (rounded != null) {
                memory.free(rounded);
                rounded = null;
                roundedBytes = 0;
            }
            rounded = memory.allocate(bytes, DeviceMemory.Use.ACTIVATIONS,
                    "activations rounded to Q8_K for a batch of " + n + " x " + x.width());
            roundedBytes = bytes;
        }
        roundQ8k(x.data, x.pitch, n, x.width(), rounded, x.pitch);
        return rounded;
    }

    /** Rows rounded to Q8_K as int8 values, a scale per 256 and a sum per 16 (quantize_q8k_rows' output). */
    private record Quantized(CUdeviceptr values, CUdeviceptr scales, CUdeviceptr sums) {}

    /**
     * {@code rows} rows of {@code width} floats at {@code src} rounded to Q8_K into a scratch buffer of the backend,
     * grown on demand: the input of a tensor-core product. Valid until the next call.
     */
    private Quantized quantizedQ8k(CUdeviceptr src, int pitch, int rows, int width) {
        long values = (long) rows * width;
        long bytes = values + values / 64 + values / 4;  // int8 values, a float per 256, an int per 16
        if (bytes > quantizedBytes) {
            if (quantized != null) {
                memory.free(quantized);
                quantized = null;
                quantizedBytes = 0;
            }
            quantized = memory.allocate(bytes, DeviceMemory.Use.ACTIVATIONS,
                    "activations rounded to 8 bits for a batch of " + rows + " x " + width);
            quantizedBytes = bytes;
        }
        Quantized q = new Quantized(quantized, quantized.withByteOffset(values),
                quantized.withByteOffset(values + values / 64));
        launch(kernels.quantizeQ8kRows, "quantize_q8k_rows", ceilDiv(rows * (width / 16), 256), 1, 256, src, pitch,
                rows, width, q.values(), q.scales(), q.sums());
        return q;
    }

    private void roundQ8k(CUdeviceptr src, int srcPitch, int rows, int width, CUdeviceptr dst, int dstPitch) {
        launch(kernels.roundQ8k, "round_q8k", ceilDiv(rows * (width / 16), 256), 1, 256, src, srcPitch, rows, width,
                dst, dstPitch);
    }

    /**
     * Enqueues {@code f} on the default stream. Arguments map to kernel parameters by type: device pointer,
     * {@code Integer} (int), {@code Long} (long long), {@code Float} (float), {@code null} (a null pointer).
     */
    private void launch(CUfunction f, String name, int gridX, int gridY, int block, Object... args) {
        launchShared(f, name, gridX, gridY, block, 0, args);
    }

    private void launchShared(CUfunction f, String name, int gridX, int gridY, int block, long sharedBytes,
                              Object... args) {
        if (profiler == null || capture != null) {
            launchDirect(f, name, gridX, gridY, block, (int) sharedBytes, args);
            return;
        }
        String op = opName == null || opName.isEmpty() ? name : opName + " " + name;
        long bytes = opBytes;
        long flops = opFlops;
        opName = null;
        opBytes = 0;
        opFlops = 0;
        CUevent start = profiler.begin();
        launchDirect(f, name, gridX, gridY, block, (int) sharedBytes, args);
        profiler.end(start, op, bytes, flops);
    }

    private void launchDirect(CUfunction f, String name, int gridX, int gridY, int block, int sharedBytes,
                              Object... args) {
        int result;
        if (sequentialReason == null) {
            result = ProgrammaticLaunch.launch(launchScratch, f, gridX, gridY, block, sharedBytes, stream, args);
            if (result == CUresult.CUDA_ERROR_NOT_SUPPORTED && capture == null) {
                sequentialReason = "not supported by this driver (" + CUresult.stringFor(result) + ")";
                result = launchSequential(f, gridX, gridY, block, sharedBytes, args);
            } else if (result != CUresult.CUDA_SUCCESS && capture != null) {
                // a driver that launches so but cannot record it: the failed recording runs its steps directly,
                // later recordings launch one kernel after the other
                sequentialReason = "failed while recording a decode step as a CUDA graph ("
                        + CUresult.stringFor(result) + ")";
            }
        } else {
            result = launchSequential(f, gridX, gridY, block, sharedBytes, args);
        }
        check(result, "launching kernel " + name + " (" + gridX + " x " + gridY + " blocks) on " + label);
        if (SYNC && capture == null) {
            check(JCudaDriver.cuCtxSynchronize(), "kernel " + name + " on " + label);
        }
    }

    /** Enqueues {@code f} through JCuda's {@code cuLaunchKernel} (after the kernel before it); the result code. */
    private int launchSequential(CUfunction f, int gridX, int gridY, int block, int sharedBytes, Object... args) {
        NativePointerObject[] params = new NativePointerObject[args.length];
        for (int i = 0; i < args.length; i++) {
            params[i] = switch (args[i]) {
                case null -> Pointer.to(new long[] {0L});
                case CUdeviceptr p -> Pointer.to(p);
                case Integer v -> Pointer.to(new int[] {v});
                case Long v -> Pointer.to(new long[] {v});
                case Float v -> Pointer.to(new float[] {v});
                default -> throw new IllegalArgumentException("kernel argument of type " + args[i].getClass());
            };
        }
        return JCudaDriver.cuLaunchKernel(f, gridX, gridY, 1, block, 1, 1, sharedBytes, stream, Pointer.to(params),
                null);
    }

    /** What a failed copy to the host reports: it waits for every kernel enqueued before, and fails with the first. */
    private String readingResults() {
        return "reading results from " + label + " (this reports the first failed kernel since the last read;"
                + " -Dmoe4j.cuda.sync=true names it)";
    }

    /** For the profile: the next launch is the product of {@code n} rows with {@code w}. */
    private void noteProduct(CudaWeight w, int n) {
        if (profiler != null) {
            note(role(w), w.rowBytes() * w.rows(), 2L * w.rows() * w.rowLength() * n);
        }
    }

    /** For the profile: what the next launch does (a name prefix), the bytes it reads and its flops. */
    private void note(String name, long bytes, long flops) {
        opName = name;
        opBytes = bytes;
        opFlops = flops;
    }

    /** A weight's role in a layer, for the profile: {@code blk.7.attn_q.weight} is {@code attn_q}. */
    private static String role(CudaWeight w) {
        return w.name().replaceFirst("^blk\\.\\d+\\.", "").replaceFirst("\\.weight$", "");
    }

    /** The operations timed since the last call, waiting for them (see {@link CudaProfile#take}). */
    synchronized List<CudaProfile.Op> takeProfile() {
        if (profiler == null || closed) {
            return List.of();
        }
        makeCurrent();
        return profiler.take();
    }

    private int gridY(int blocks) {
        if (blocks > MAX_GRID_Y) {
            throw new IllegalArgumentException("batch too large for one CUDA launch (" + blocks + " blocks > "
                    + MAX_GRID_Y + "); use a smaller batch size");
        }
        return blocks;
    }

    // ---------------------------------------------------------------- checks

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    private static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    private static CudaActivations act(Activations a) {
        return BackendChecks.buffer(a, CudaActivations.class, "CUDA");
    }

    private static CudaWeight weight(Weight w) {
        return BackendChecks.weight(w, CudaWeight.class, "CUDA");
    }

    private static CudaKvCache kv(KvCache c) {
        return BackendChecks.kvCache(c, CudaKvCache.class, "CUDA");
    }

    private static CudaRouting routing(ExpertRouting r) {
        if (r instanceof CudaRouting c) {
            return c;
        }
        throw new IllegalArgumentException("expert routing was not allocated by the CUDA backend"
                + " (use Backend.allocateRouting)");
    }

    /**
     * The rounded copy of {@code x}'s first {@code n} rows when the operation calling this is the very next one after
     * the add_rms_norm_rounded or attention_decode_rounded_* that wrote them (or, {@code afterRoute}, the next but one
     * with only a {@link #route} in between, which writes elsewhere): then nothing can have changed them since.
     * Otherwise null, and the kernel rounds {@code x} itself.
     */
    private CUdeviceptr roundedRows(CudaActivations x, int n, boolean afterRoute) {
        if (x != roundedBuffer || n > roundedCount) {
            return null;
        }
        boolean next = operations == roundedAt + 1;
        boolean afterOneRoute = afterRoute && operations == roundedAt + 2 && routedAt == roundedAt + 1;
        return next || afterOneRoute ? x.rounded : null;
    }

    /** The gate and up kernel's blocks a multiprocessor, 4 or 8 (tests compare both); see {@link #pairOccupancy}. */
    synchronized void usePairOccupancy(int blocks) {
        if (blocks != 4 && blocks != 8) {
            throw new IllegalArgumentException("the gate and up kernel is compiled for 4 or 8 blocks, not " + blocks);
        }
        pairOccupancy = blocks;
    }

    synchronized int pairOccupancy() { return pairOccupancy; }

    /** A weight's format in kernel names: {@code Q3_KP}, {@code Q6_KP} for padded blocks (see {@link #padded}). */
    private static String label(CudaWeight w) {
        return w.padded() ? w.format() + "P" : w.format().toString();
    }

    /** Whether matrices of {@code type} bound from now on are padded (tests compare both); see {@link #padded}. */
    synchronized void usePadding(GgmlType type, boolean on) {
        if (!PADDABLE.contains(type)) {
            throw new IllegalArgumentException("the CUDA backend pads " + PADDABLE + " blocks, not " + type);
        }
        EnumSet<GgmlType> next = padded.isEmpty() ? EnumSet.noneOf(GgmlType.class) : EnumSet.copyOf(padded);
        if (on) {
            next.add(type);
        } else {
            next.remove(type);
        }
        padded = Collections.unmodifiableSet(next);
    }

    boolean pads(GgmlType type) { return padded.contains(type); }

    /** Whether kernels prefetch before they wait from now on (see {@link #PREFETCH}; tests compare both). */
    synchronized void usePrefetch(boolean on) {
        makeCurrent();
        requireNotRecording("switching prefetching");
        kernels.prefetch(on);
        prefetch = on;
    }

    synchronized boolean prefetch() { return prefetch; }

    /** Chooses the fused routing's warps per block, 1 or 4 (tests compare both); see {@link #routeWarps}. */
    synchronized void useRouteWarps(int warps) {
        if (warps != 1 && warps != MV_ROWS_PER_BLOCK) {
            throw new IllegalArgumentException(
                    "route_f32 runs 1 or " + MV_ROWS_PER_BLOCK + " warps a block, not " + warps);
        }
        routeWarps = warps;
    }

    synchronized int routeWarps() { return routeWarps; }

    /** Turns one-token attention's rounding of its output on or off (tests compare both): {@link #attentionRounds}. */
    synchronized void useAttentionRounds(boolean on) {
        attentionRounds = on;
    }

    synchronized boolean attentionRounds() { return attentionRounds; }

    /** Turns the experts' SwiGLU rows' one rounding on or off (tests compare both): {@link #combineRoundsOnce}. */
    synchronized void useCombineRoundsOnce(boolean on) {
        combineRoundsOnce = on;
    }

    synchronized boolean combineRoundsOnce() { return combineRoundsOnce; }

    synchronized boolean roundOnce() { return roundOnce; }

    synchronized boolean tiledAttention() { return tiledAttention; }

    /**
     * System property {@code name} as one of two numbers: {@code usual} when it is not set, {@code usual} or
     * {@code other} when it is, and any other value a clear error naming both.
     */
    static int eitherProperty(String name, int usual, int other) {
        String value = System.getProperty(name);
        if (value == null || value.strip().equals(Integer.toString(usual))) {
            return usual;
        }
        if (value.strip().equals(Integer.toString(other))) {
            return other;
        }
        throw new IllegalArgumentException(
                "-D" + name + " must be " + other + " or " + usual + ", not '" + value + "'");
    }

    /** Turns the rounding once of one-token steps on or off (tests compare both); see {@link #roundOnce}. */
    synchronized void useRoundOnce(boolean on) {
        roundOnce = on;
        roundedBuffer = null;
    }

    /** Launches of the kernels that read rounded rows so far (tests: the experiment really ran). */
    synchronized long roundedLaunches() {
        return roundedLaunches;
    }

    /** A weight the matrix kernels take (what {@link #requireMatrix} asks, without failing). */
    private static boolean isMatrix(CudaWeight w) {
        return !w.isVector() && w.rowLength() % 16 == 0;
    }

    /** Matrix kernels read whole 16-value parts; a single-row tensor is held decoded as f32. */
    private static void requireMatrix(CudaWeight w) {
        if (w.rowLength() % 16 != 0) {
            throw new IllegalArgumentException("tensor " + w.name() + " has rows of " + w.rowLength()
                    + " values; the CUDA backend's matrix kernels need a multiple of 16");
        }
    }

    private static void requirePositions(CudaKvCache c, int startPos, int n) {
        BackendChecks.requirePositions(c.contextLength(), startPos, n);
    }
}
