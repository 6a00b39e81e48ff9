package moe4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;

/**
 * The model {@code generate} and {@code chat} use without {@code -m}: a small random-weight Qwen3-MoE
 * (4 layers, 16 experts with 4 used, a 2048-token vocabulary, Q4_K_M), written once to
 * {@code ${MOE4J_HOME:-~/.cache/moe4j}/demo/} and reused. Its text is noise; it shows the pipeline and
 * its speed on a machine without a real model.
 */
final class DemoModel {

    /** System property that overrides {@link #HOME_ENV} (tests point it at a temporary directory). */
    static final String HOME_PROPERTY = "moe4j.home";
    static final String HOME_ENV = "MOE4J_HOME";

    static final ModelShape SHAPE = new ModelShape(ModelShape.QWEN3MOE, 4, 512, 8, 2, 64, 16, 4, 256, 1536, 2048,
            4096, 1e6f, 1e-6f, false);
    static final TensorMix MIX = TensorMix.Q4_K_M;
    static final long SEED = 42;
    /** Names the shape and mix, so that a different demo never reuses an old file. */
    static final String FILE_NAME = String.format(Locale.ROOT, "qwen3moe-l%d-e%d-x%d-v%d-%s.gguf", SHAPE.layers(),
            SHAPE.embd(), SHAPE.experts(), SHAPE.vocab(), MIX);

    private DemoModel() {}

    /** {@code moe4j.home}, else {@code $MOE4J_HOME}, else {@code ~/.cache/moe4j}. */
    static Path home() {
        String configured = System.getProperty(HOME_PROPERTY);
        if (configured == null || configured.isBlank()) {
            configured = System.getenv(HOME_ENV);
        }
        if (configured != null && !configured.isBlank()) {
            return Path.of(configured);
        }
        return Path.of(System.getProperty("user.home"), ".cache", "moe4j");
    }

    static Path file() {
        return home().resolve("demo").resolve(FILE_NAME);
    }

    /** The demo model's file, created first if missing; tells the user on {@code err} what it is. */
    static Path ensure(PrintWriter err) throws IOException {
        Path file = file();
        if (!Files.isRegularFile(file)) {
            err.println("creating the demo model " + file + " (once) ...");
            err.flush();
            Path dir = Files.createDirectories(file.getParent());
            // another process may create it at the same time: each writes its own file, the last move wins
            Path partial = dir.resolve(FILE_NAME + "." + ProcessHandle.current().pid() + ".part");
            try {
                TestModelGenerator.write(SHAPE, MIX, SEED, partial);
                Files.move(partial, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } finally {
                Files.deleteIfExists(partial);
            }
        }
        err.println("no -m MODEL given: using the demo model " + file + ". Its weights are RANDOM, so the text is"
                + " noise; it shows the whole pipeline and its speed. Pass -m MODEL.gguf for a real model.");
        err.flush();
        return file;
    }
}
