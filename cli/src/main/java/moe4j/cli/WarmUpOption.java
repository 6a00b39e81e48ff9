package moe4j.cli;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.Locale;

import moe4j.engine.Model;
import picocli.CommandLine.Option;

/** {@code --no-warmup} for the commands that serve requests or measure speed after loading a model. */
final class WarmUpOption {

    /** How long the warm-up may keep taking single-token steps after its first one (its prompt batch follows). */
    private static final Duration BUDGET = Duration.ofSeconds(2);

    @Option(names = "--no-warmup",
            description = "skip the warm-up after loading: a short throwaway run that has the JIT compile the kernels "
                    + "before the first request (at most 64 single-token steps and a prompt batch, about 2 s)")
    boolean skip;

    /** Warms {@code model} up unless skipped, saying so on {@code err}; closes the model if that fails. */
    Model apply(Model model, PrintWriter err) {
        if (skip) {
            return model;
        }
        try {
            long start = System.nanoTime();
            int tokens = model.warmUp(BUDGET);
            err.printf(Locale.ROOT, "warm-up: %d tokens in %.2f s (--no-warmup skips it)%n", tokens,
                    (System.nanoTime() - start) / 1e9);
            err.flush();
            return model;
        } catch (RuntimeException | Error e) {
            model.close();
            throw e;
        }
    }
}
