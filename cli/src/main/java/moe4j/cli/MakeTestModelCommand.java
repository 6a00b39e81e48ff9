package moe4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j make-test-model}: writes a random-weight Qwen3 / Qwen3-MoE GGUF file. */
@Command(name = "make-test-model", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Writes a random-weight Qwen3 / Qwen3-MoE GGUF model for tests and benchmarks.",
                "The file is complete (metadata, synthetic byte-level BPE vocabulary, every tensor). Start from a",
                "preset and override any hyperparameter; the same options and seed always give the same file."})
final class MakeTestModelCommand implements Callable<Integer> {

    /** Files smaller than this are written without progress output. */
    private static final long PROGRESS_MIN_BYTES = 64L << 20;

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = {"-o", "--output"}, required = true, paramLabel = "FILE", description = "output .gguf file (replaced)")
    private Path output;

    @Option(names = "--preset", paramLabel = "NAME",
            description = "tiny (default for qwen3moe), tiny-dense (default for qwen3), qwen3-30b-a3b, qwen3-235b-a22b,"
                    + " qwen3-0.6b")
    private String preset;

    @Option(names = "--arch", paramLabel = "ARCH", description = "qwen3moe or qwen3 (default: the preset's)")
    private String arch;

    @Option(names = "--type", paramLabel = "MIX", defaultValue = "F32",
            description = "tensor type mix, as llama-quantize assigns it: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE})")
    private TensorMix mix;

    @Option(names = "--seed", paramLabel = "N", defaultValue = "42", description = "random seed (default: ${DEFAULT-VALUE})")
    private long seed;

    @Option(names = "--layers", paramLabel = "N", description = "number of layers")
    private Integer layers;

    @Option(names = "--embd", paramLabel = "N", description = "embedding (hidden) size")
    private Integer embd;

    @Option(names = "--heads", paramLabel = "N", description = "query heads")
    private Integer heads;

    @Option(names = "--kv-heads", paramLabel = "N", description = "key/value heads")
    private Integer kvHeads;

    @Option(names = "--head-dim", paramLabel = "N", description = "size of one head")
    private Integer headDim;

    @Option(names = "--experts", paramLabel = "N", description = "experts per layer (qwen3moe)")
    private Integer experts;

    @Option(names = "--experts-used", paramLabel = "N", description = "experts used per token (qwen3moe)")
    private Integer expertsUsed;

    @Option(names = "--expert-ffn", paramLabel = "N", description = "FFN size of one expert (qwen3moe)")
    private Integer expertFfn;

    @Option(names = "--ffn", paramLabel = "N", description = "dense FFN size (feed_forward_length)")
    private Integer ffn;

    @Option(names = "--vocab", paramLabel = "N", description = "vocabulary size (at least " + ModelShape.MIN_VOCAB + ")")
    private Integer vocab;

    @Option(names = "--context", paramLabel = "N", description = "training context length")
    private Integer context;

    @Option(names = "--tied", negatable = true, description = "tie the LM head to token_embd (no output.weight)")
    private Boolean tied;

    @Option(names = Main.VERBOSE, description = "stack trace on errors")
    private boolean verbose;

    @Override
    public Integer call() throws Exception {
        ModelShape shape = shape();
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(shape, mix);
        long total = plan.stream().mapToLong(TestModelGenerator.TensorPlan::byteSize).sum();
        requireSpace(total);
        PrintWriter err = spec.commandLine().getErr();
        TestModelGenerator.Progress progress = total >= PROGRESS_MIN_BYTES ? new ProgressLine(err, output, isTerminal())
                : TestModelGenerator.Progress.NONE;
        TestModelGenerator.write(shape, mix, seed, output, progress);
        long size = Files.size(output);
        PrintWriter out = spec.commandLine().getOut();
        out.printf("wrote %s: %s (%d bytes), %s %s, %d layers, %d tensors%n", output, Sizes.bytes(size), size,
                shape.arch(), mix, shape.layers(), plan.size());
        out.flush();
        return 0;
    }

    /** The preset with the command-line overrides applied; invalid combinations are usage errors. */
    private ModelShape shape() {
        String targetArch = arch != null ? arch : preset == null ? ModelShape.QWEN3MOE : null;
        String presetName = preset != null ? preset : ModelShape.QWEN3.equals(targetArch) ? "tiny-dense" : "tiny";
        try {
            ModelShape p = ModelShape.preset(presetName);
            String a = targetArch != null ? targetArch : p.arch();
            // A dense model built from an MoE preset drops the experts; the reverse needs them given.
            boolean moe = ModelShape.QWEN3MOE.equals(a);
            if (moe && !p.isMoe() && (experts == null || expertsUsed == null || expertFfn == null)) {
                throw new IllegalArgumentException("--arch qwen3moe with the dense preset '" + presetName
                        + "' needs --experts, --experts-used and --expert-ffn");
            }
            return new ModelShape(a, or(layers, p.layers()), or(embd, p.embd()), or(heads, p.heads()),
                    or(kvHeads, p.kvHeads()), or(headDim, p.headDim()), moe ? or(experts, p.experts()) : 0,
                    moe ? or(expertsUsed, p.expertsUsed()) : 0, moe ? or(expertFfn, p.expertFfn()) : 0,
                    or(ffn, p.ffn()), or(vocab, p.vocab()), or(context, p.context()), p.ropeBase(), p.rmsEps(),
                    tied != null ? tied : p.tiedEmbeddings());
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage(), e);
        }
    }

    /** Refuses up front when the tensors alone would not fit on the output's file system. */
    private void requireSpace(long tensorBytes) throws IOException {
        Path dir = output.toAbsolutePath().getParent();
        if (!Files.isDirectory(dir)) {
            throw new NoSuchFileException(dir.toString(), null, "output directory does not exist");
        }
        long usable = Files.getFileStore(dir).getUsableSpace();
        if (tensorBytes > usable) {
            throw new IOException("the model needs " + Sizes.bytes(tensorBytes) + " but only "
                    + Sizes.bytes(usable) + " is free in " + dir);
        }
    }

    private static int or(Integer override, int dflt) {
        return override != null ? override : dflt;
    }

    private static boolean isTerminal() {
        return System.console() != null && System.console().isTerminal();
    }

    /** Progress on stderr: one line rewritten in place on a terminal, a line per 10% otherwise. */
    private static final class ProgressLine implements TestModelGenerator.Progress {
        private final PrintWriter err;
        private final Path file;
        private final boolean terminal;
        private long lastShown = -1;

        ProgressLine(PrintWriter err, Path file, boolean terminal) {
            this.err = err;
            this.file = file;
            this.terminal = terminal;
        }

        @Override
        public void tensorWritten(String name, long bytesDone, long bytesTotal) {
            long percent = 100 * bytesDone / bytesTotal;
            long step = terminal ? percent : percent / 10 * 10;
            if (step == lastShown) {
                return;
            }
            lastShown = step;
            String text = String.format("writing %s: %3d%% (%s of %s)", file.getFileName(), percent,
                    Sizes.bytes(bytesDone), Sizes.bytes(bytesTotal));
            if (terminal) {
                err.print("\r" + text + (bytesDone == bytesTotal ? "\n" : ""));
            } else {
                err.println(text);
            }
            err.flush();
        }
    }
}
