package moe4j.engine;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import java.util.function.Predicate;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufWriter;

/** Random GGUF models for tests that need a model but no llama.cpp reference (no shared/ needed). */
final class TestModels {

    private TestModels() {}

    /** Writes (once per directory) a random model of {@code shape} and {@code mix}. */
    static Path generate(Path dir, ModelShape shape, TensorMix mix, long seed) {
        Path out = dir.resolve(shape.arch() + "-" + mix + "-" + seed + ".gguf");
        if (!Files.exists(out)) {
            try {
                TestModelGenerator.write(shape, mix, seed, out);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return out;
    }

    /**
     * Copies {@code source} to {@code target}, keeping the tensors {@code keep} accepts and letting
     * {@code edit} change metadata and add tensors.
     */
    static Path rewrite(Path source, Path target, Predicate<String> keep, Consumer<GgufWriter> edit) throws IOException {
        try (GgufFile in = GgufFile.open(source)) {
            GgufWriter w = new GgufWriter();
            w.putAll(in.metadata());
            for (GgufTensor t : in.tensors()) {
                if (keep.test(t.name())) {
                    w.addTensor(t);
                }
            }
            edit.accept(w);
            w.write(target);
        }
        return target;
    }
}
