package moe4j.engine.model;

import java.util.List;

import moe4j.engine.LoadListener;
import moe4j.engine.ModelConfig;
import moe4j.engine.UnsupportedModelException;
import moe4j.gguf.GgufFile;

/** The architectures moe4j can run, by {@code general.architecture}. */
public final class Architectures {

    private Architectures() {}

    /** {@code general.architecture} values with a graph. */
    public static final List<String> SUPPORTED = List.of("qwen3", "qwen3moe");

    /** Binds the weights of {@code file} to the backends of {@code backends} as the graph of its architecture. */
    public static ModelGraph load(ModelConfig config, GgufFile file, BackendAssignment backends, LoadListener listener) {
        return switch (config.architecture()) {
            case "qwen3", "qwen3moe" -> Qwen3Graph.load(config, file, backends, listener);
            default -> throw new UnsupportedModelException("architecture '" + config.architecture()
                    + "' is not supported (supported: " + String.join(", ", SUPPORTED) + ") in " + file.paths().getFirst());
        };
    }
}
