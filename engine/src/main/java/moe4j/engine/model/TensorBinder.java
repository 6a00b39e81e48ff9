package moe4j.engine.model;

import java.util.Arrays;
import java.util.Optional;

import moe4j.engine.LoadListener;
import moe4j.engine.UnsupportedModelException;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Backend;
import moe4j.kernels.Weight;

/** Binds a model's tensors to backends after checking each one's shape against the configuration. */
final class TensorBinder {

    private final GgufFile file;
    private final LoadListener listener;
    private final int total;
    private int done;

    /** @param total number of tensors the graph will bind, for progress reports */
    TensorBinder(GgufFile file, LoadListener listener, int total) {
        this.file = file;
        this.listener = listener;
        this.total = total;
    }

    /** Binds tensor {@code name} to {@code backend}; it must have exactly the dimensions {@code dims} (ggml order). */
    Weight bind(Backend backend, String name, long... dims) {
        return bind(backend, file.tensor(name), dims, false);
    }

    /** As {@link #bind(Backend, String, long...)}, for a weight only looked up a row at a time ({@link Backend#bindForLookup}). */
    Weight bindForLookup(Backend backend, String name, long... dims) {
        return bind(backend, file.tensor(name), dims, true);
    }

    /** Binds tensor {@code name} to {@code backend} if the file has it. */
    Optional<Weight> bindOptional(Backend backend, String name, long... dims) {
        return file.findTensor(name).map(t -> bind(backend, t, dims, false));
    }

    private Weight bind(Backend backend, GgufTensor t, long[] dims, boolean lookup) {
        long[] actual = t.shape();
        long[] expected = Arrays.copyOf(dims, 4);
        for (int i = dims.length; i < 4; i++) {
            expected[i] = 1;
        }
        if (!Arrays.equals(actual, expected)) {
            throw new UnsupportedModelException("tensor " + t.name() + " has shape " + Arrays.toString(t.dims())
                    + ", the model configuration implies " + Arrays.toString(dims) + " (in " + file.paths().getFirst() + ")");
        }
        Weight w = lookup ? backend.bindForLookup(t) : backend.bind(t);
        done++;
        listener.onTensorBound(t.name(), done, total);
        return w;
    }
}
