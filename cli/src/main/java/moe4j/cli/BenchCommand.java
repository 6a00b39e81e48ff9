package moe4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import moe4j.engine.LoadListener;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.testmodel.SyntheticModel;
import moe4j.engine.testmodel.TensorMix;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.quant.QuantFormats;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe4j bench}: prompt-processing and generation speed measured as llama.cpp's {@code llama-bench}
 * measures it, so the two tables compare line by line. {@code ppN} evaluates N random tokens from an empty
 * context (in batches of {@code -b}, logits of the last token only); {@code tgN} decodes N random tokens one
 * at a time from an empty context; with {@code -d D} the context holds D random tokens first ({@code ppN @ dD}).
 * After the model's warm-up ({@link WarmUpOption}), each test runs once untimed, then {@code -r} times; the figure
 * is the mean and sample standard deviation of the repetitions' tokens per second.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Measures prompt processing (ppN) and generation (tgN) speed like llama.cpp's llama-bench.",
                "Random tokens from an empty context (or one of -d tokens); after the model's warm-up, one untimed run per"
                        + " test, then -r timed ones."})
final class BenchCommand implements Callable<Integer> {

    /** make-test-model's default seed, so that a synthetic model has the bytes of the file it would write. */
    private static final long SYNTHETIC_SEED = 42;

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = {"-p", "--n-prompt"}, paramLabel = "N", defaultValue = "512",
            description = "prompt tokens of the pp test; 0 skips it (default: ${DEFAULT-VALUE})")
    private int nPrompt;

    @Option(names = {"-n", "--n-gen"}, paramLabel = "N", defaultValue = "128",
            description = "generated tokens of the tg test; 0 skips it (default: ${DEFAULT-VALUE})")
    private int nGen;

    @Option(names = {"-b", "--batch-size"}, paramLabel = "N", defaultValue = "512",
            description = "prompt tokens per forward pass (default: ${DEFAULT-VALUE}, llama-bench's micro-batch)")
    private int batchSize;

    @Option(names = {"-d", "--n-depth"}, paramLabel = "N", defaultValue = "0",
            description = "tokens already in the context when each test starts (evaluated untimed before every run, as "
                    + "llama-bench's -d): speed at a depth, where attention reads that much more (default: ${DEFAULT-VALUE})")
    private int depth;

    @Option(names = {"-r", "--repetitions"}, paramLabel = "N", defaultValue = "5",
            description = "timed repetitions of each test (default: ${DEFAULT-VALUE})")
    private int repetitions;

    @Option(names = "--json", description = "print a JSON array of results instead of the table")
    private boolean json;

    @Option(names = "--synthetic", paramLabel = "PRESET[:TYPE]",
            description = "instead of -m, a model of random weights built in memory (no file), e.g. qwen3-235b-a22b:Q3_K_M;"
                    + " presets and types as make-test-model's --preset and --type (default type: Q4_K_M)")
    private String synthetic;

    @Option(names = "--layers", paramLabel = "N",
            description = "with --synthetic, this many layers instead of the preset's")
    private Integer layers;

    @Mixin
    private ModelOptions modelOptions;

    @Mixin
    private WarmUpOption warmUp;

    /**
     * One test's timings: tokens per second of each repetition, and the heap the timed runs allocated per token (all
     * threads; -1 where the JVM cannot tell).
     */
    record Result(String test, int nPrompt, int nGen, int nDepth, int threads, double[] samplesTs,
            double heapBytesPerToken) {

        double avgTs() {
            double sum = 0;
            for (double s : samplesTs) {
                sum += s;
            }
            return sum / samplesTs.length;
        }

        /** Sample standard deviation (n - 1), 0 for a single repetition, as llama-bench reports it. */
        double stddevTs() {
            if (samplesTs.length < 2) {
                return 0;
            }
            double avg = avgTs();
            double sq = 0;
            for (double s : samplesTs) {
                sq += (s - avg) * (s - avg);
            }
            return Math.sqrt(sq / (samplesTs.length - 1));
        }
    }

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        if (nPrompt < 0 || nGen < 0 || depth < 0) {
            throw new CommandLine.ParameterException(cl, "-p, -n and -d must not be negative, got " + nPrompt + ", " + nGen
                    + " and " + depth);
        }
        if (nPrompt == 0 && nGen == 0) {
            throw new CommandLine.ParameterException(cl, "nothing to measure: -p and -n are both 0");
        }
        if (repetitions < 1) {
            throw new CommandLine.ParameterException(cl, "--repetitions must be at least 1, got " + repetitions);
        }
        if (batchSize < 1) {
            throw new CommandLine.ParameterException(cl, "--batch-size must be positive, got " + batchSize);
        }
        LoadOptions options = modelOptions.loadOptions(cl, LoadListener.NONE)
                .withBatchSize(Math.min(batchSize, Math.max(1, Math.max(nPrompt, depth))));
        PrintWriter out = cl.getOut();
        try (Model model = warmUp.apply(load(cl, options), cl.getErr());
             Session session = model.newSession(depth + Math.max(nPrompt, nGen))) {
            ModelLoader.printPlacement(model, cl.getErr());
            Row row = new Row(model, options);
            if (!json) {
                out.println(Row.HEADER);
                out.println(Row.RULE);
                out.flush();
            }
            SplittableRandom rnd = new SplittableRandom(1234);
            int vocab = model.config().vocab();
            int[] context = rnd.ints(depth, 0, vocab).toArray();
            String at = depth > 0 ? " @ d" + depth : "";
            List<Result> results = new ArrayList<>();
            if (nPrompt > 0) {
                int[] tokens = rnd.ints(nPrompt, 0, vocab).toArray();
                float[] logits = new float[vocab];
                results.add(measure(session, context, "pp" + nPrompt + at, nPrompt, 0, options.effectiveThreads(),
                        () -> session.evaluate(tokens, 0, nPrompt, logits)));
            }
            if (nGen > 0) {
                int[] tokens = rnd.ints(nGen, 0, vocab).toArray();
                float[] logits = new float[vocab];
                results.add(measure(session, context, "tg" + nGen + at, 0, nGen, options.effectiveThreads(), () -> {
                    for (int i = 0; i < nGen; i++) {
                        session.evaluate(tokens, i, 1, logits);
                    }
                }));
            }
            if (json) {
                ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
                out.println(mapper.writeValueAsString(results.stream().map(row::json).toList()));
            } else {
                results.forEach(r -> out.println(row.text(r)));
            }
            out.flush();
            heapNote(results).ifPresent(cl.getErr()::println);
            // after the runs, which touched the weights: in what pages they were read, for comparing runs
            ModelLoader.WeightPages pages = ModelLoader.WeightPages.of(model);
            cl.getErr().println("weights: " + pages.kind());
            cl.getErr().println("cpu: " + CpuDescription.line());
            pages.note().ifPresent(cl.getErr()::println);
            CpuDescription.slowKernelsNote(model).ifPresent(cl.getErr()::println);
            cl.getErr().flush();
        }
        return 0;
    }

    /** The model of {@code -m}, or the one {@code --synthetic} builds in memory. */
    private Model load(CommandLine cl, LoadOptions options) throws IOException {
        if (synthetic == null) {
            if (layers != null) {
                throw new CommandLine.ParameterException(cl, "--layers needs --synthetic");
            }
            return Model.load(modelOptions.requireModel(cl), options);
        }
        if (modelOptions.model != null) {
            throw new CommandLine.ParameterException(cl, "--synthetic and --model exclude each other");
        }
        SyntheticModel.Spec spec;
        try {
            spec = SyntheticModel.Spec.parse(synthetic, TensorMix.Q4_K_M);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, "--synthetic: " + e.getMessage(), e);
        }
        if (layers != null) {
            if (layers < 1) {
                throw new CommandLine.ParameterException(cl, "--layers must be positive, got " + layers);
            }
            spec = spec.withLayers(layers);
        }
        options.requireUsableDevices();  // before building it, not after (a file's weights are only mapped)
        return Model.load(SyntheticModel.build(spec, SYNTHETIC_SEED), options);
    }

    /**
     * Runs {@code test} once untimed, then {@link #repetitions} times, each from a context holding just the
     * {@code context} tokens (evaluated untimed before each run).
     */
    private Result measure(Session session, int[] context, String name, int nPrompt, int nGen, int threads,
            Runnable test) {
        startAt(session, context);
        test.run();
        double[] samples = new double[repetitions];
        long allocated = 0;
        for (int i = 0; i < repetitions; i++) {
            startAt(session, context);
            long heapBefore = allocatedBytes();
            long start = System.nanoTime();
            test.run();
            samples[i] = (nPrompt + nGen) / ((System.nanoTime() - start) / 1e9);
            long heapAfter = allocatedBytes();
            allocated = allocated < 0 || heapBefore < 0 || heapAfter < 0 ? -1 : allocated + heapAfter - heapBefore;
        }
        double perToken = allocated < 0 ? -1 : (double) allocated / ((long) repetitions * (nPrompt + nGen));
        return new Result(name, nPrompt, nGen, context.length, threads, samples, perToken);
    }

    /** Heap bytes allocated by all threads since the JVM started, or -1 where the JVM does not count them. */
    private static long allocatedBytes() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean threads
                && threads.isThreadAllocatedMemorySupported() && threads.isThreadAllocatedMemoryEnabled()) {
            try {
                return threads.getTotalThreadAllocatedBytes();
            } catch (UnsupportedOperationException e) {
                return -1;
            }
        }
        return -1;
    }

    /**
     * Generation that allocates this much heap per token has a CPU kernel running with its vectors boxed: a decoding
     * step of the 12-layer Q5_K_M test file allocated 20-180 KiB, and 457 MiB in a run whose Q5_K kernel was compiled
     * so (bench/CPU-NOTES.md, "A JIT hazard").
     */
    static final double BOXED_KERNEL_BYTES_PER_TOKEN = 16 * 1024 * 1024;

    /**
     * The heap each test allocated per token, for stderr; with a note where generation allocated enough to mean a
     * kernel runs with boxed vectors.
     */
    static Optional<String> heapNote(List<Result> results) {
        List<Result> known = results.stream().filter(r -> r.heapBytesPerToken() >= 0).toList();
        if (known.isEmpty()) {
            return Optional.empty();
        }
        StringBuilder s = new StringBuilder("heap allocated per token:");
        for (Result r : known) {
            s.append(' ').append(r.test()).append(' ').append(Sizes.bytes(Math.round(r.heapBytesPerToken()))).append(',');
        }
        s.setLength(s.length() - 1);
        known.stream().filter(r -> r.nGen() > 0 && r.heapBytesPerToken() >= BOXED_KERNEL_BYTES_PER_TOKEN).findFirst()
                .ifPresent(r -> s.append(System.lineSeparator()).append("note: generation allocated ")
                        .append(Sizes.bytes(Math.round(r.heapBytesPerToken())))
                        .append(" a token; the CPU kernels allocate nothing, so the JIT probably left one with its vectors"
                                + " boxed: run with the JVM options in the README (./moe4j passes them)"));
        return Optional.of(s.toString());
    }

    private static void startAt(Session session, int[] context) {
        session.reset();
        if (context.length > 0) {
            session.evaluate(context, 0, context.length, new float[session.vocabularySize()]);
        }
    }

    /** The model columns shared by every result row, in the table and the JSON. */
    private record Row(String model, long sizeBytes, long params, String backend, String cpuInfo, int batch) {

        static final String HEADER = String.format(Locale.ROOT, "| %-40s | %10s | %10s | %-16s | %7s | %13s | %18s |",
                "model", "size", "params", "backend", "threads", "test", "t/s");
        static final String RULE = "| " + "-".repeat(40) + " | " + "-".repeat(9) + ": | " + "-".repeat(9) + ": | "
                + "-".repeat(16) + " | " + "-".repeat(6) + ": | " + "-".repeat(12) + ": | " + "-".repeat(17) + ": |";

        Row(Model model, LoadOptions options) {
            this(model.path().getFileName().toString(),
                    model.file().tensors().stream().mapToLong(GgufTensor::byteSize).sum(),
                    model.file().tensors().stream().mapToLong(GgufTensor::elementCount).sum(),
                    model.backendDescription(), CpuDescription.modelName().orElse(""), options.batchSize());
        }

        String text(Result r) {
            return String.format(Locale.ROOT, "| %-40s | %10s | %10s | %-16s | %7d | %13s | %18s |", model,
                    Sizes.bytes(sizeBytes), Sizes.count(params), backend, r.threads(), r.test(),
                    String.format(Locale.ROOT, "%.2f ± %.2f", r.avgTs(), r.stddevTs()));
        }

        Map<String, Object> json(Result r) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("model_filename", model);
            m.put("model_size", sizeBytes);
            m.put("model_n_params", params);
            m.put("backend", backend);
            // llama-bench's field, and the vector width that decides which CPU kernels ran: runs compare across machines
            m.put("cpu_info", cpuInfo);
            m.put("vector_bits", QuantFormats.vectorBits());
            m.put("n_batch", batch);
            m.put("test", r.test());
            m.put("n_prompt", r.nPrompt());
            m.put("n_gen", r.nGen());
            m.put("n_depth", r.nDepth());
            m.put("threads", r.threads());
            m.put("avg_ts", r.avgTs());
            m.put("stddev_ts", r.stddevTs());
            m.put("samples_ts", r.samplesTs());
            // moe4j's own: heap allocated per token by the timed runs, -1 where the JVM does not count it
            m.put("heap_bytes_per_token", r.heapBytesPerToken());
            return m;
        }
    }
}
