package moe4j.engine.model;

import moe4j.kernels.Activations;
import moe4j.kernels.Backend;
import moe4j.kernels.Weight;

/** SwiGLU: {@code down · (silu(gate · x) * (up · x))}. */
final class DenseFeedForward implements FeedForward {

    private final Backend backend;
    private final Weight gate;
    private final Weight up;
    private final Weight down;

    DenseFeedForward(Backend backend, Weight gate, Weight up, Weight down) {
        this.backend = backend;
        this.gate = gate;
        this.up = up;
        this.down = down;
    }

    @Override
    public void reserve(Workspace ws) {
        ws.buffer("ffn.gate", gate.rows());
        ws.buffer("ffn.up", up.rows());
    }

    @Override
    public void forward(Activations in, Activations out, int n, Workspace ws) {
        Activations g = ws.buffer("ffn.gate", gate.rows());
        Activations u = ws.buffer("ffn.up", up.rows());
        backend.matmul(gate, in, g, n);
        backend.matmul(up, in, u, n);
        backend.siluMul(g, u, n);
        backend.matmul(down, g, out, n);
    }
}
