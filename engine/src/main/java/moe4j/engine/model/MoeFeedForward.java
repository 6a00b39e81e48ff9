package moe4j.engine.model;

import moe4j.kernels.Activations;
import moe4j.kernels.Backend;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.Weight;

/**
 * Mixture of SwiGLU experts with softmax routing over all experts, top-k selection and renormalized
 * weights (Qwen3-MoE; no shared expert). The batch's tokens are grouped by expert so each selected
 * expert runs once over all its tokens.
 */
final class MoeFeedForward implements FeedForward {

    private final Backend backend;
    private final Weight router;
    private final Weight gate;
    private final Weight up;
    private final Weight down;
    private final int expertsUsed;

    MoeFeedForward(Backend backend, Weight router, Weight gate, Weight up, Weight down, int expertsUsed) {
        this.backend = backend;
        this.router = router;
        this.gate = gate;
        this.up = up;
        this.down = down;
        this.expertsUsed = expertsUsed;
    }

    @Override
    public void reserve(Workspace ws) {
        ws.buffer("moe.router", router.rows());
        ws.routing(router.rows(), expertsUsed);
        ws.expertBuffers(expertsUsed, down.rows(), gate.rows());
    }

    @Override
    public void forward(Activations in, Activations out, int n, Workspace ws) {
        Activations logits = ws.buffer("moe.router", router.rows());
        ExpertRouting routing = ws.routing(router.rows(), expertsUsed);
        backend.route(router, in, logits, n, routing);
        backend.experts(gate, up, down, in, routing, ws.expertBuffers(expertsUsed, down.rows(), gate.rows()), out, n);
    }
}
