package moe4j.engine.placement;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import moe4j.engine.placement.ModelFootprint.Part;
import moe4j.engine.placement.ModelFootprint.TensorFootprint;

/**
 * The blocks the engine runs a model in, each on one device (see {@code moe4j.engine.model.BackendAssignment}): per
 * layer its attention block (attention norm, Q/K/V/output projections, per-head Q/K norms) and its feed-forward block
 * (FFN norm, router, experts or dense FFN), and the head (final norm, LM head). The engine binds all of a block's
 * tensors on its device, so the planner must place them together for its per-device sums to be what is bound there.
 *
 * <p>A block's <em>anchors</em> decide its device: the attention projections, the experts (a dense model's FFN
 * matrices), the LM head (the final norm when the head is the tied embedding). The rest of the block is small and
 * follows them: that is how {@code -ot exps=cpu} takes the FFN norm and router along with the experts.
 *
 * <p>The token embedding is looked up where it is. Other global tensors are not run by the engine; they are kept
 * with the head.
 */
final class Blocks {

    /** Block of each tensor, -1 for the token embedding and other global tensors. */
    private final int[] block;
    private final boolean[] anchor;
    private final List<TensorFootprint> tensors;
    private final int layers;

    Blocks(ModelFootprint m) {
        this.tensors = m.tensors();
        this.layers = m.layers();
        this.block = new int[tensors.size()];
        this.anchor = new boolean[tensors.size()];
        boolean hasOutput = tensors.stream().anyMatch(t -> t.part() == Part.OUTPUT);
        for (int i = 0; i < tensors.size(); i++) {
            TensorFootprint t = tensors.get(i);
            Part p = t.part();
            if (t.layer() >= 0) {
                block[i] = attention(t.layer()) + (p.feedForward() ? 1 : 0);
                // a dense FFN inside an MoE layer (a shared expert) runs with the experts, it does not decide
                anchor[i] = p == Part.ATTENTION || p == Part.EXPERTS || (p == Part.DENSE_FFN && !m.isMoe());
            } else if (p == Part.OUTPUT || p == Part.OUTPUT_NORM) {
                block[i] = head();
                anchor[i] = p == Part.OUTPUT || !hasOutput;
            } else {
                block[i] = -1;
            }
        }
    }

    /** Number of block indices: two per layer and the head. */
    int count() { return 2 * layers + 1; }

    static int attention(int layer) { return 2 * layer; }

    static int feedForward(int layer) { return 2 * layer + 1; }

    int head() { return 2 * layers; }

    /** The block of tensor {@code i}, or -1. */
    int of(int i) { return block[i]; }

    /** True when tensor {@code i} is one of the tensors that decide where its block runs. */
    boolean isAnchor(int i) { return anchor[i]; }

    /**
     * The device holding most bytes of {@code block}'s tensors in {@code where} (anchors only with {@code anchors}),
     * skipping null entries; null when there are none.
     */
    String majority(int block, String[] where, boolean anchors) {
        Map<String, Long> bytes = new LinkedHashMap<>();
        for (int i = 0; i < tensors.size(); i++) {
            if (this.block[i] == block && where[i] != null && (!anchors || anchor[i])) {
                bytes.merge(where[i], Math.max(1, tensors.get(i).bytes()), Long::sum);
            }
        }
        return bytes.entrySet().stream().max(Map.Entry.comparingByValue()).map(Map.Entry::getKey).orElse(null);
    }

    /** For people, at the start of a sentence: {@code Layer 3's feed-forward block}. */
    String describe(int block) {
        if (block == head()) {
            return "The LM head";
        }
        return "Layer " + block / 2 + "'s " + (block % 2 == 0 ? "attention" : "feed-forward") + " block";
    }

    /** The short names of {@code block}'s tensors ({@code ffn_norm, ffn_gate_inp, ...}). */
    List<String> members(int block) {
        List<String> names = new ArrayList<>();
        for (int i = 0; i < tensors.size(); i++) {
            if (this.block[i] == block) {
                String n = tensors.get(i).name();
                if (tensors.get(i).layer() >= 0) {
                    n = n.substring(n.indexOf('.', 4) + 1);
                }
                names.add(n.endsWith(".weight") ? n.substring(0, n.length() - ".weight".length()) : n);
            }
        }
        return names;
    }
}
