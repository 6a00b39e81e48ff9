package moe4j.kernels;

/**
 * The argument checks every {@link Backend} makes before it touches memory: that a buffer, weight or cache
 * was made by this backend, and that row counts, widths and cache positions are in range. One place, so
 * that every backend rejects a bad call with the same clear message.
 */
public final class BackendChecks {

    private BackendChecks() {}

    /** {@code a} as this backend's buffer type. */
    public static <T extends Activations> T buffer(Activations a, Class<T> type, String backend) {
        if (type.isInstance(a)) {
            return type.cast(a);
        }
        throw new IllegalArgumentException("buffer " + a + " does not belong to the " + backend + " backend");
    }

    /** {@code w} as this backend's weight type. */
    public static <T extends Weight> T weight(Weight w, Class<T> type, String backend) {
        if (type.isInstance(w)) {
            return type.cast(w);
        }
        throw new IllegalArgumentException("weight " + w.name() + " is not bound to the " + backend + " backend");
    }

    /** {@code c} as this backend's KV cache type. */
    public static <T extends KvCache> T kvCache(KvCache c, Class<T> type, String backend) {
        if (type.isInstance(c)) {
            return type.cast(c);
        }
        throw new IllegalArgumentException("KV cache " + c + " does not belong to the " + backend + " backend");
    }

    public static void requireRows(int n, Activations a) {
        if (n < 0 || n > a.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " rows exceeds the buffer capacity " + a.capacity());
        }
    }

    public static void requireWidth(Activations a, int width, String what) {
        if (a.width() != width) {
            throw new IllegalArgumentException(what + " must have rows of " + width + " values, buffer has " + a.width());
        }
    }

    /** {@link #requireWidth} naming {@code what + " " + name}, joined only to fail: products call it every step. */
    public static void requireWidth(Activations a, int width, String what, String name) {
        if (a.width() != width) {
            requireWidth(a, width, what + " " + name);
        }
    }

    /** Positions {@code startPos .. startPos+n-1} must lie in a cache of {@code contextLength} positions. */
    public static void requirePositions(int contextLength, int startPos, int n) {
        if (startPos < 0 || startPos + n > contextLength) {
            throw new IllegalArgumentException("positions " + startPos + ".." + (startPos + n - 1)
                    + " are outside the KV cache of " + contextLength);
        }
    }

    /**
     * The shapes of an {@link Backend#experts} call: the three expert stacks fit {@code input}'s rows and the
     * routing's experts, and the buffers hold {@code n} tokens of {@code routing.k()} assignments each.
     */
    public static void requireExperts(Weight gate, Weight up, Weight down, Activations input, ExpertRouting routing,
                                      ExpertBuffers buffers, Activations output, int n) {
        int k = routing.k();
        int ffn = gate.rows();
        int embd = input.width();
        int experts = routing.experts();
        if (gate.rowLength() != embd || up.rowLength() != embd || up.rows() != ffn || down.rowLength() != ffn
                || down.rows() != embd || gate.experts() != experts || up.experts() != experts
                || down.experts() != experts) {
            throw new IllegalArgumentException("expert tensors " + gate + ", " + up + ", " + down
                    + " do not fit inputs of " + embd + " and " + experts + " experts");
        }
        requireRows(n, input);
        requireRows(n, output);
        requireRows(n * k, buffers.input());
        requireRows(n * k, buffers.gate());
        requireRows(n * k, buffers.up());
        requireRows(n * k, buffers.output());
        requireWidth(buffers.input(), embd, "expert input buffer");
        requireWidth(buffers.gate(), ffn, "expert gate buffer");
        requireWidth(buffers.up(), ffn, "expert up buffer");
        requireWidth(buffers.output(), embd, "expert output buffer");
        requireWidth(output, embd, "expert sum");
    }
}
