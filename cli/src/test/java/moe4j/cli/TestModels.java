package moe4j.cli;

import java.io.IOException;
import java.nio.file.Path;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;

/** Small random-weight models for the command tests. */
final class TestModels {

    private TestModels() {}

    /** Writes the {@code tiny} preset (2 layers, 4 experts, 515 tokens, ChatML template) in F32 into {@code dir}. */
    static Path tinyMoe(Path dir) throws IOException {
        Path file = dir.resolve("tiny-moe.gguf");
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.F32, 7, file);
        return file;
    }
}
