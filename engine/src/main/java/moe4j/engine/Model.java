package moe4j.engine;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.function.BiFunction;

import moe4j.engine.model.Architectures;
import moe4j.engine.model.BackendAssignment;
import moe4j.engine.model.ModelGraph;
import moe4j.engine.placement.DeviceSpec;
import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.ModelFootprint;
import moe4j.engine.placement.Placement;
import moe4j.engine.placement.PlanRequest;
import moe4j.engine.tokenizer.Tokenizer;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.PhysicalMemory;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cuda.CudaBackend;
import moe4j.kernels.quant.InterleavedRows;

/**
 * A loaded model: the mapped file, its weights bound to a backend (or, placed across devices, to one backend per
 * device), and its tokenizer. Thread-safe and shared; each conversation gets its own {@link Session}. Closing the
 * model invalidates its sessions.
 *
 * <pre>{@code
 * try (Model model = Model.load(path, LoadOptions.defaults());
 *      Session session = model.newSession()) {
 *     float[] logits = session.evaluate(model.tokenizer().encode("Hello"));
 * }
 * }</pre>
 */
public final class Model implements AutoCloseable {

    private final Path path;
    private final GgufFile file;
    /** Device name -> its backend, in the placement's order; one entry on a single device. */
    private final Map<String, Backend> backends;
    private final Placement placement;
    private final ModelGraph graph;
    private final LoadOptions options;
    private final int contextLength;
    private volatile Tokenizer tokenizer;

    private Model(Path path, GgufFile file, Map<String, Backend> backends, Placement placement, ModelGraph graph,
                  LoadOptions options) {
        this.path = path;
        this.file = file;
        this.backends = backends;
        this.placement = placement;
        this.graph = graph;
        this.options = options;
        int trained = graph.config().contextLength();
        this.contextLength = options.contextLength() > 0 ? options.contextLength()
                : Math.min(trained, LoadOptions.DEFAULT_CONTEXT_CAP);
    }

    /**
     * Maps {@code path} (or, with {@link LoadOptions#inMemory()}, reads it into memory) and binds its weights to the
     * backend of {@link LoadOptions#device()}: read in place on the CPU, uploaded to a GPU. When
     * {@link LoadOptions#placement()} asks for several devices, the {@link moe4j.engine.placement.Planner} places the
     * layers and experts and each device's part is bound to its own backend.
     *
     * @throws IOException                         when the file cannot be read
     * @throws moe4j.gguf.GgufFormatException      when it is not a valid GGUF file
     * @throws moe4j.gguf.GgufMetadataException    when a required hyperparameter is missing
     * @throws UnsupportedModelException           when its architecture or a variant is not supported
     * @throws moe4j.kernels.cuda.CudaUnavailableException   when a GPU is asked for and cannot be used
     * @throws moe4j.kernels.cuda.CudaOutOfMemoryException   when the weights do not fit on the GPU
     * @throws IllegalArgumentException            when a placement across devices is inconsistent or does not fit
     *                                             (the planner's message)
     */
    public static Model load(Path path, LoadOptions options) throws IOException {
        Objects.requireNonNull(options, "options");
        return load(GgufFile.open(path, options.inMemory()), options);
    }

    /**
     * Binds the weights of an open model, e.g. one built in memory by
     * {@link moe4j.engine.testmodel.SyntheticModel}, as {@link #load(Path, LoadOptions)} binds a file's. The model
     * owns {@code file} from then on: it closes it when closed, or at once when loading fails.
     */
    public static Model load(GgufFile file, LoadOptions options) {
        return load(file, options, Model::openBackend);
    }

    /**
     * As {@link #load(GgufFile, LoadOptions)}, with the backend of each device opened by {@code opener}: tests wrap
     * the real backends to see what the graph binds and allocates on each.
     */
    static Model load(GgufFile file, LoadOptions requested, BiFunction<Device, LoadOptions, Backend> opener) {
        Objects.requireNonNull(requested, "options");
        LoadOptions options = requested.repack() && !repackFits(file) ? requested.withRepack(false) : requested;
        Path path = file.paths().getFirst();
        Map<String, Backend> backends = new LinkedHashMap<>();
        try {
            String arch = file.metadata().getString("general.architecture");
            if (!Architectures.SUPPORTED.contains(arch)) {
                throw new UnsupportedModelException("architecture '" + arch + "' is not supported (supported: "
                        + String.join(", ", Architectures.SUPPORTED) + ") in " + path);
            }
            ModelConfig config = ModelConfig.from(file);
            if (options.kvCacheType() == KvCacheType.Q8_0 && config.headDim() % 32 != 0) {
                throw new IllegalArgumentException("a Q8_0 KV cache needs a head size that is a multiple of 32; "
                        + path + " has " + config.headDim());
            }
            PlacementOptions placed = options.placement();
            if (placed.isSingleDevice()) {
                Device device = options.devices().getFirst();
                Backend backend = opener.apply(device, options);
                backends.put(device.toString(), backend);
                if (backend instanceof CudaBackend cuda) {
                    // fail before a long upload rather than part-way through it
                    long weights = file.tensors().stream()
                            .mapToLong(t -> CudaBackend.heldBytes(t.type(), t.dims(), t.byteSize())).sum();
                    cuda.requireFree(weights, "the weights of " + path.getFileName());
                }
                ModelGraph graph = Architectures.load(config, file, BackendAssignment.single(backend, config.layers()),
                        options.listener());
                return new Model(path, file, backends, null, graph, options);
            }
            Placement placement = place(file, config, options, backends, opener);
            if (options.repack() && InterleavedRows.available() && !placement.request().cpuRepack()) {
                options = options.withRepack(false);   // the placement fits only with the file's bytes in RAM (place)
            }
            ModelGraph graph = Architectures.load(config, file,
                    assign(placement, backends, stageBatch(options)), options.listener());
            return new Model(path, file, backends, placement, graph, options);
        } catch (RuntimeException | Error e) {
            backends.values().forEach(Backend::close);
            file.close();
            throw e;
        }
    }

    /** Physical memory a repacked copy of the weights leaves free at least: the JVM, its heap, caches, workspaces. */
    static final long REPACK_HEADROOM = 2L << 30;

    /**
     * Whether the CPU's repacked copy of {@code file}'s matrices of the repacked types ({@link InterleavedRows#types()};
     * {@link LoadOptions#repack()}; all that can be
     * repacked, whatever the placement) fits in physical memory beside the weights when these are held in memory of their own
     * (read with {@code --no-mmap}, or built in memory); a mapped file's pages can be dropped, so then the copy alone.
     * Where it does not fit, the weights are multiplied as they lie rather than the machine running out of memory.
     */
    static boolean repackFits(GgufFile file) {
        long copy = !InterleavedRows.available() ? 0 : file.tensors().stream()
                .filter(t -> !t.name().equals("token_embd.weight")
                        && InterleavedRows.fitsShape(t.type(), t.shape()[1], t.shape()[0]))
                .mapToLong(t -> CpuBackend.heldBytes(t.type(), t.dims(), t.byteSize())).sum();
        long held = file.mapped() ? 0 : file.tensors().stream().mapToLong(GgufTensor::byteSize).sum();
        return repackFits(held, copy, PhysicalMemory.bytes());
    }

    static boolean repackFits(long heldBytes, long copyBytes, long physicalBytes) {
        return copyBytes == 0 || heldBytes + copyBytes <= physicalBytes - REPACK_HEADROOM;
    }

    /**
     * Opens a backend per listed device (into {@code backends}), plans the model on them and closes those the
     * placement leaves empty.
     */
    private static Placement place(GgufFile file, ModelConfig config, LoadOptions options,
                                   Map<String, Backend> backends, BiFunction<Device, LoadOptions, Backend> opener) {
        PlacementOptions placed = options.placement();
        List<Device> listed = options.devices();
        List<String> names = DevicePlan.names(listed);
        List<Long> gpuMemory = new ArrayList<>();
        List<String> gpuNames = new ArrayList<>();
        for (int i = 0; i < names.size(); i++) {
            Device d = i < listed.size() ? listed.get(i) : Device.CPU;
            Backend b = opener.apply(d, options);
            backends.put(names.get(i), b);
            if (b instanceof CudaBackend cuda) {
                gpuMemory.add(cuda.device().totalMemory());
                gpuNames.add(cuda.device().name());
            }
        }
        int context = options.contextLength() > 0 ? options.contextLength()
                : Math.min(config.contextLength(), LoadOptions.DEFAULT_CONTEXT_CAP);
        PlanRequest request = DevicePlan.request(placed, names, listed.size(), config.layers(), context,
                        options.kvCacheType(), options.batchSize())
                .withCpuRepack(options.repack() && InterleavedRows.available());
        List<DeviceSpec> specs = DevicePlan.specs(names, gpuMemory, gpuNames);
        Placement placement = DevicePlan.plan(ModelFootprint.of(file), specs, request);
        if (request.cpuRepack() && !placement.request().cpuRepack()) {
            LoadOptions asFile = options.withRepack(false);
            for (int i = 0; i < names.size(); i++) {
                Device d = i < listed.size() ? listed.get(i) : Device.CPU;
                if (d.kind() == Device.Kind.CPU) {
                    backends.get(names.get(i)).close();
                    backends.put(names.get(i), opener.apply(d, asFile));
                }
            }
        }
        Set<String> used = DevicePlan.used(placement);
        backends.entrySet().removeIf(e -> {
            if (used.contains(e.getKey())) {
                return false;
            }
            e.getValue().close();
            return true;
        });
        backends.forEach((name, b) -> {
            if (b instanceof CudaBackend cuda) {
                cuda.requireFree(placement.device(name).weightsBytes(), "the weights placed on " + name);
            }
        });
        return placement;
    }

    /**
     * The graph's view of a placement: per layer, the backends of its attention block and of its feed-forward block
     * (which the planner places whole, FFN norm and router with the experts).
     */
    /** The staging threshold, 0 where no batch can reach it. */
    private static int stageBatch(LoadOptions options) {
        int n = options.placement().stageBatch();
        return n <= options.batchSize() ? n : 0;
    }

    private static BackendAssignment assign(Placement placement, Map<String, Backend> backends, int stageBatch) {
        List<String> order = List.copyOf(backends.keySet());
        List<Integer> attention = new ArrayList<>();
        List<Integer> ffn = new ArrayList<>();
        for (LayerPlacement l : placement.layers()) {
            attention.add(order.indexOf(l.attention()));
            ffn.add(order.indexOf(l.ffn()));
        }
        return new BackendAssignment(List.copyOf(backends.values()),
                order.indexOf(placement.deviceOf("token_embd.weight")), order.indexOf(DevicePlan.headDevice(placement)),
                attention, ffn, stageBatch);
    }

    private static Backend openBackend(Device device, LoadOptions options) {
        if (device.kind() == Device.Kind.CPU) {
            return new CpuBackend(options.effectiveThreads(), options.repack());
        }
        if (!CudaBackend.supportsKvCache(options.kvCacheType())) {
            throw new IllegalArgumentException("the " + device + " backend stores the KV cache as f16 or f32, not "
                    + options.kvCacheType().name().toLowerCase(Locale.ROOT));
        }
        return CudaBackend.open(device.index());
    }

    public ModelConfig config() { return graph.config(); }

    public Path path() { return path; }

    /** The GGUF file (metadata and tensor views), open while the model is. */
    public GgufFile file() { return file; }

    public LoadOptions options() { return options; }

    /** Positions each new session holds. */
    public int contextLength() { return contextLength; }

    /**
     * E.g. {@code cpu (8 threads)} or {@code cuda:0 (NVIDIA H100 80GB HBM3, 79.2 GiB, compute 9.0)}; across devices
     * each device's, e.g. {@code cuda:0 (...) + cpu (8 threads)}, a further CPU instance named
     * ({@code cpu:1 = cpu (8 threads)}).
     */
    /**
     * Bytes of weights the backends hold in a layout of their own besides the file (the CPU's repacked Q4_K
     * matrices, {@link LoadOptions#repack()}): memory of the process on top of the mapped file.
     */
    public long repackedBytes() {
        return backends.values().stream().mapToLong(Backend::repackedBytes).sum();
    }

    public String backendDescription() {
        if (placement == null) {
            return backends.values().iterator().next().description();
        }
        List<String> parts = new ArrayList<>();
        backends.forEach((name, b) -> parts.add(name.startsWith(DeviceSpec.CPU_NAME + ":")
                ? name + " = " + b.description() : b.description()));
        return String.join(" + ", parts);
    }

    /** Whether any part of the model computes on a CPU backend. */
    public boolean computesOnCpu() {
        return backends.values().stream().anyMatch(b -> b instanceof CpuBackend);
    }

    /** Where the layers and experts went when the model is placed across devices; empty on a single device. */
    public Optional<Placement> placement() { return Optional.ofNullable(placement); }

    /** The model's tokenizer, built from its metadata on first use. */
    public Tokenizer tokenizer() {
        Tokenizer t = tokenizer;
        if (t == null) {
            synchronized (this) {
                t = tokenizer;
                if (t == null) {
                    t = Tokenizer.fromGguf(file.metadata());
                    tokenizer = t;
                }
            }
        }
        return t;
    }

    /**
     * Runs single-token steps and then a short prompt on a throwaway session, so that the JIT compiles the kernels
     * before the first real request: the JVM starts out interpreting them, and interpreted Vector API code runs tens
     * of times slower (the first prompt of a fresh process evaluated at a few tokens per second). llama.cpp runs a
     * warm-up pass at load for the same reason (for its own first-use costs). The steps come first because of how C2
     * compiles the one-token row kernels: compiled while prompt batches run, they were now and then compiled with
     * some vectors boxed (the Vector API's shared methods then carry the prompt tiles' profiles too), and generation
     * after a prompt ran up to half as fast for the rest of the process (a Q2_K file: 31-59 tok/s from run to run;
     * with a step first, 56-61 in eight runs of eight). The steps stop at the first of {@value #WARM_UP_STEPS} steps,
     * the room the prompt leaves in the session and {@code budget}, after at least one; the prompt follows. Results
     * are discarded and nothing the caller can see changes. Returns the number of tokens evaluated.
     */
    public int warmUp(Duration budget) {
        Objects.requireNonNull(budget, "budget");
        int positions = Math.min(contextLength, WARM_UP_PROMPT + WARM_UP_STEPS);
        long deadline = System.nanoTime() + budget.toNanos();
        try (Session session = newSession(positions)) {
            int vocab = session.vocabularySize();
            float[] logits = new float[vocab];
            int[] tokens = new int[positions];
            for (int i = 0; i < positions; i++) {
                tokens[i] = (int) ((i * 7919L + 1) % vocab);
            }
            int prompt = Math.min(WARM_UP_PROMPT, positions / 2);
            int done = 0;
            while (done < positions - prompt && (done == 0 || System.nanoTime() < deadline)) {
                session.evaluate(tokens, done, 1, logits);
                done++;
            }
            if (prompt > 0) {
                session.evaluate(tokens, done, prompt, logits);
            }
            return done + prompt;
        }
    }

    /** Tokens of the warm-up's prompt (one batch: a 6-token and a 4-token tile of the prompt path) and most steps. */
    private static final int WARM_UP_PROMPT = 10;
    private static final int WARM_UP_STEPS = 64;

    /** A session with its own KV cache of {@link #contextLength()} positions. */
    public Session newSession() {
        return newSession(contextLength);
    }

    /** A session with its own KV cache of {@code contextLength} positions. */
    public Session newSession(int contextLength) {
        if (contextLength <= 0) {
            throw new IllegalArgumentException("session context length must be positive, got " + contextLength);
        }
        return new Session(graph, graph.newKvCache(contextLength, options.kvCacheType()),
                graph.newWorkspace(options.batchSize()));
    }

    @Override
    public void close() {
        backends.values().forEach(Backend::close);
        file.close();
    }

    @Override
    public String toString() {
        ModelConfig c = config();
        return c.architecture() + " model " + path.getFileName() + " (" + c.layers() + " layers, "
                + (c.isMoe() ? c.experts() + " experts, " + c.expertsUsed() + " used, " : "") + "vocab " + c.vocab() + ")";
    }
}
