package moe4j.gguf;

/**
 * A metadata key the caller needs is absent or holds the wrong type. Unchecked: a model file that lacks a
 * required hyperparameter is not something callers can recover from locally.
 */
public class GgufMetadataException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String key;

    public GgufMetadataException(String key, String message) {
        super(message);
        this.key = key;
    }

    public String key() { return key; }
}
