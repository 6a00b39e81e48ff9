package moe4j.engine;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Objects;

import moe4j.engine.model.Architectures;
import moe4j.engine.model.ModelGraph;
import moe4j.engine.tokenizer.Tokenizer;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cuda.CudaBackend;

/**
 * A loaded model: the mapped file, its weights bound to a backend, and its tokenizer. Thread-safe and
 * shared; each conversation gets its own {@link Session}. Closing the model invalidates its sessions.
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
    private final Backend backend;
    private final ModelGraph graph;
    private final LoadOptions options;
    private final int contextLength;
    private volatile Tokenizer tokenizer;

    private Model(Path path, GgufFile file, Backend backend, ModelGraph graph, LoadOptions options) {
        this.path = path;
        this.file = file;
        this.backend = backend;
        this.graph = graph;
        this.options = options;
        int trained = graph.config().contextLength();
        this.contextLength = options.contextLength() > 0 ? options.contextLength()
                : Math.min(trained, LoadOptions.DEFAULT_CONTEXT_CAP);
    }

    /**
     * Maps {@code path} and binds its weights to the backend of {@link LoadOptions#device()}: read in place
     * on the CPU, uploaded to a GPU.
     *
     * @throws IOException                         when the file cannot be read
     * @throws moe4j.gguf.GgufFormatException      when it is not a valid GGUF file
     * @throws moe4j.gguf.GgufMetadataException    when a required hyperparameter is missing
     * @throws UnsupportedModelException           when its architecture or a variant is not supported
     * @throws moe4j.kernels.cuda.CudaUnavailableException   when a GPU is asked for and cannot be used
     * @throws moe4j.kernels.cuda.CudaOutOfMemoryException   when the weights do not fit on the GPU
     */
    public static Model load(Path path, LoadOptions options) throws IOException {
        Objects.requireNonNull(options, "options");
        GgufFile file = GgufFile.open(path);
        Backend backend = null;
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
            backend = openBackend(options, file, path);
            ModelGraph graph = Architectures.load(config, file, backend, options.listener());
            return new Model(path, file, backend, graph, options);
        } catch (RuntimeException | Error e) {
            if (backend != null) {
                backend.close();
            }
            file.close();
            throw e;
        }
    }

    private static Backend openBackend(LoadOptions options, GgufFile file, Path path) {
        Device device = options.device();
        if (device.kind() == Device.Kind.CPU) {
            return new CpuBackend(options.effectiveThreads());
        }
        if (!CudaBackend.supportsKvCache(options.kvCacheType())) {
            throw new IllegalArgumentException("the " + device + " backend stores the KV cache as f16 or f32, not "
                    + options.kvCacheType().name().toLowerCase(Locale.ROOT));
        }
        CudaBackend cuda = CudaBackend.open(device.index());
        try {
            // fail before a long upload rather than part-way through it
            long weights = file.tensors().stream().mapToLong(GgufTensor::byteSize).sum();
            cuda.requireFree(weights, "the weights of " + path.getFileName());
            return cuda;
        } catch (RuntimeException e) {
            cuda.close();
            throw e;
        }
    }

    public ModelConfig config() { return graph.config(); }

    public Path path() { return path; }

    /** The GGUF file (metadata and tensor views), open while the model is. */
    public GgufFile file() { return file; }

    public LoadOptions options() { return options; }

    /** Positions each new session holds. */
    public int contextLength() { return contextLength; }

    /** E.g. {@code cpu (8 threads)} or {@code cuda:0 (NVIDIA H100 80GB HBM3, 79.2 GiB, compute 9.0)}. */
    public String backendDescription() { return backend.description(); }

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

    /** A session with its own KV cache of {@link #contextLength()} positions. */
    public Session newSession() {
        return newSession(contextLength);
    }

    /** A session with its own KV cache of {@code contextLength} positions. */
    public Session newSession(int contextLength) {
        if (contextLength <= 0) {
            throw new IllegalArgumentException("session context length must be positive, got " + contextLength);
        }
        return new Session(graph, backend.allocateKvCache(config().layers(), contextLength, config().kvDim(),
                options.kvCacheType()), graph.newWorkspace(options.batchSize()));
    }

    @Override
    public void close() {
        backend.close();
        file.close();
    }

    @Override
    public String toString() {
        ModelConfig c = config();
        return c.architecture() + " model " + path.getFileName() + " (" + c.layers() + " layers, "
                + (c.isMoe() ? c.experts() + " experts, " + c.expertsUsed() + " used, " : "") + "vocab " + c.vocab() + ")";
    }
}
