package moe4j.engine;

/** Receives progress while a model's tensors are bound. */
@FunctionalInterface
public interface LoadListener {

    LoadListener NONE = (tensor, done, total) -> { };

    /** Called after each tensor; {@code done} of {@code total}. */
    void onTensorBound(String tensor, int done, int total);
}
