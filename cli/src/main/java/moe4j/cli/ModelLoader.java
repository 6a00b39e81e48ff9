package moe4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

import moe4j.engine.LoadListener;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.ModelConfig;
import moe4j.engine.Session;
import moe4j.gguf.GgufTensor;
import picocli.CommandLine;

/**
 * Loads a model for a command with progress on stderr (a bar redrawn in place on a terminal, one line
 * otherwise), then reports what it loaded and, once a session exists, the memory both use.
 */
final class ModelLoader {

    private static final int BAR_WIDTH = 30;

    private ModelLoader() {}

    /** Loads {@code path} with the options' threads, context and KV cache type. */
    static Model load(Path path, ModelOptions options, CommandLine cl) throws IOException {
        PrintWriter err = cl.getErr();
        boolean terminal = Terminal.isInteractive();
        Progress progress = new Progress(err, path.getFileName().toString(), terminal);
        LoadOptions loadOptions = options.loadOptions(cl, progress);
        long start = System.nanoTime();
        Model model;
        try {
            model = Model.load(path, loadOptions);
        } finally {
            progress.clear();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        err.printf(Locale.ROOT, "loaded %s in %.2f s: %s; %s%n", path.getFileName(), seconds, describe(model.config()),
                model.backendDescription());
        CpuDescription.slowKernelsNote(model).ifPresent(err::println);
        printPlacement(model, err);
        return model;
    }

    /** The placement across devices as a short table, when the model has one. */
    static void printPlacement(Model model, PrintWriter err) {
        model.placement().ifPresent(p -> err.print("placement:" + System.lineSeparator() + p.summary()));
        err.flush();
    }

    /**
     * A session of {@code contextLength} positions (0: the model's default), after which the memory line is
     * printed: mapped weights, the session's KV cache, the Java heap in use.
     */
    static Session newSession(Model model, int contextLength, PrintWriter err) {
        Session session = contextLength > 0 ? model.newSession(contextLength) : model.newSession();
        long weights = model.file().tensors().stream().mapToLong(GgufTensor::byteSize).sum();
        Runtime rt = Runtime.getRuntime();
        WeightPages pages = WeightPages.of(model);
        long repacked = model.repackedBytes();
        err.printf(Locale.ROOT, "memory: weights %s (%s%s), KV cache %s (%s, %d positions), heap %s%n",
                Sizes.bytes(weights), pages.kind(), repacked > 0 ? "; " + Sizes.bytes(repacked) + " repacked in RAM" : "",
                Sizes.bytes(kvCacheBytes(model, session.contextLength())),
                model.options().kvCacheType().name().toLowerCase(Locale.ROOT), session.contextLength(),
                Sizes.bytes(rt.totalMemory() - rt.freeMemory()));
        pages.note().ifPresent(err::println);
        err.flush();
        return session;
    }

    /**
     * How the weights are held: "in memory", or "mapped" with, where the system tells (Linux), the page size most of
     * the resident mapping uses ("2 MiB pages" is the faster one); and for a mapping offered 2 MiB pages that got 4 KiB
     * ones, a note on how to get them. From one read of the process's smaps.
     */
    record WeightPages(String kind, Optional<String> note) {

        static WeightPages of(Model model) {
            if (!model.file().mapped()) {
                return new WeightPages("in memory", Optional.empty());
            }
            Optional<Double> share = model.file().hugePageShare();
            if (share.isEmpty()) {
                return new WeightPages("mapped", Optional.empty());
            }
            if (share.get() >= 0.5) {
                return new WeightPages("mapped, 2 MiB pages", Optional.empty());
            }
            List<Path> paths = model.file().paths();
            Optional<String> note = !model.file().hugePagesAdvised() ? Optional.empty() : Optional.of(String.format(
                    Locale.ROOT, "note: the weights are mapped in 4 KiB pages (the page cache holds the file so, e.g. as it"
                            + " was written); drop it from the page cache once (dd if=%s iflag=nocache count=0%s) and the"
                            + " next load reads it in 2 MiB pages, which generates about 10%% faster", paths.getFirst(),
                    paths.size() > 1 ? ", and the same for each of its " + paths.size() + " parts" : ""));
            return new WeightPages("mapped, 4 KiB pages", note);
        }
    }

    /** Keys and values of every layer and position (the session does not expose its cache's size). */
    private static long kvCacheBytes(Model model, int positions) {
        ModelConfig c = model.config();
        return (long) Math.ceil(2.0 * c.layers() * positions * c.kvDim() * model.options().kvCacheType().bytesPerValue());
    }

    private static String describe(ModelConfig c) {
        StringBuilder s = new StringBuilder(c.architecture()).append(", ").append(c.layers()).append(" layers");
        if (c.isMoe()) {
            s.append(", ").append(c.experts()).append(" experts (").append(c.expertsUsed()).append(" used)");
        }
        return s.append(", vocab ").append(c.vocab()).toString();
    }

    /** The load's progress: a bar redrawn on a terminal, otherwise one line when binding starts. */
    private static final class Progress implements LoadListener {
        private final PrintWriter err;
        private final String name;
        private final boolean terminal;
        private int shownPercent = -1;
        private boolean announced;

        Progress(PrintWriter err, String name, boolean terminal) {
            this.err = err;
            this.name = name;
            this.terminal = terminal;
        }

        @Override
        public void onTensorBound(String tensor, int done, int total) {
            if (!terminal) {
                if (!announced) {
                    // on the first tensor rather than up front: a file that cannot be opened gets its error line alone
                    announced = true;
                    err.println("loading " + name + " ...");
                    err.flush();
                }
                return;
            }
            if (total <= 0) {
                return;
            }
            int percent = (int) (100L * done / total);
            if (percent == shownPercent) {
                return;
            }
            shownPercent = percent;
            int filled = BAR_WIDTH * percent / 100;
            err.print("\rloading " + name + " [" + "#".repeat(filled) + " ".repeat(BAR_WIDTH - filled) + "] "
                    + percent + "%");
            err.flush();
        }

        /** Erases the bar, so that what follows (the summary or an error) starts on a clean line. */
        void clear() {
            if (shownPercent >= 0) {
                err.print(Terminal.CLEAR_LINE);
                err.flush();
            }
        }
    }
}
