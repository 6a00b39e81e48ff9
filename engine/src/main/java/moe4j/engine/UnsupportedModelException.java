package moe4j.engine;

/**
 * A well-formed model file that moe4j cannot run: an unknown architecture, a variant the graph does
 * not implement (fused QKV, biases), or tensors that contradict the metadata. The message names the
 * file, key or tensor at fault.
 */
public class UnsupportedModelException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    public UnsupportedModelException(String message) {
        super(message);
    }
}
