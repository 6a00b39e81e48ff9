package moe4j.engine.model;

import moe4j.kernels.Activations;

/** The position-wise block after attention: {@code out = FFN(in)} for each row. */
public interface FeedForward {

    /** Allocates this block's buffers in {@code workspace}. */
    void reserve(Workspace workspace);

    void forward(Activations in, Activations out, int n, Workspace workspace);
}
