package moe4j.kernels;

/**
 * Working buffers of {@link Backend#experts}, each with one row per (token, selected expert) pair, so
 * {@code batch * expertsUsed} rows.
 *
 * @param input  gathered inputs (model width)
 * @param gate   gate projections (expert FFN width)
 * @param up     up projections (expert FFN width)
 * @param output expert outputs before weighting (model width)
 */
public record ExpertBuffers(Activations input, Activations gate, Activations up, Activations output)
        implements AutoCloseable {

    /** Buffers for batches of up to {@code tokens} tokens with {@code k} experts each. */
    public static ExpertBuffers allocate(Backend backend, int tokens, int k, int width, int expertFfn) {
        int rows = Math.multiplyExact(tokens, k);
        return new ExpertBuffers(backend.allocate(rows, width), backend.allocate(rows, expertFfn),
                backend.allocate(rows, expertFfn), backend.allocate(rows, width));
    }

    @Override
    public void close() {
        input.close();
        gate.close();
        up.close();
        output.close();
    }
}
