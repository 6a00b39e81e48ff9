package moe4j.kernels;

import java.util.Arrays;

/**
 * Routing of a batch of tokens to mixture-of-experts experts, reused across steps: for every token
 * {@code t} and selection slot {@code s < k}, the chosen expert {@code expert[t*k+s]} and its weight
 * {@code weight[t*k+s]} (slot 0 = highest router score). {@link #group} then lists the assignments (index
 * {@code t*k+s}) expert by expert, so each expert's weights are read once per batch.
 *
 * <p>Obtain one from {@link Backend#allocateRouting}: this class holds the routing in host arrays, as the
 * CPU backend uses it; a device backend returns a subclass that keeps the routing in device memory, so it
 * never travels to the host, and leaves these arrays unused.
 */
public class ExpertRouting implements AutoCloseable {

    private final int experts;
    private final int k;
    private final int capacity;
    private final int[] expert;
    private final float[] weight;
    private final int[] order;
    private final int[] start;
    private final int[] active;
    private final int[] cursor;
    private final int[] position;
    private int activeCount;

    /**
     * @param experts  experts per layer
     * @param k        experts used per token
     * @param capacity maximum tokens per batch
     */
    public ExpertRouting(int experts, int k, int capacity) {
        if (experts <= 0 || k <= 0 || k > experts || capacity <= 0) {
            throw new IllegalArgumentException("invalid routing shape: " + experts + " experts, " + k
                    + " used per token, batch of " + capacity);
        }
        int slots = Math.multiplyExact(k, capacity);
        this.experts = experts;
        this.k = k;
        this.capacity = capacity;
        this.expert = new int[slots];
        this.weight = new float[slots];
        this.order = new int[slots];
        this.start = new int[experts + 1];
        this.active = new int[experts];
        this.cursor = new int[experts];
        this.position = new int[slots];
    }

    public int experts() { return experts; }

    /** Experts used per token. */
    public int k() { return k; }

    /** Maximum tokens per batch. */
    public int capacity() { return capacity; }

    /** Selected expert per assignment {@code t*k+s} (written by the router). */
    public int[] expert() { return expert; }

    /** Weight per assignment {@code t*k+s} (written by the router). */
    public float[] weight() { return weight; }

    /** Assignments sorted by expert (valid after {@link #group}). */
    public int[] order() { return order; }

    /** Inverse of {@link #order}: assignment {@code a} is at {@code order[position[a]]} (valid after {@link #group}). */
    public int[] position() { return position; }

    /** Expert {@code e}'s assignments are {@code order[start[e] .. start[e+1])} (valid after {@link #group}). */
    public int[] start() { return start; }

    /** The experts with at least one assignment, ascending (valid after {@link #group}). */
    public int[] active() { return active; }

    public int activeCount() { return activeCount; }

    /** Releases device memory held by a backend's subclass; nothing to release here. */
    @Override
    public void close() {}

    /** Sorts the first {@code n} tokens' assignments by expert (stable: by token within an expert). */
    public void group(int n) {
        if (n < 0 || n > capacity) {
            throw new IllegalArgumentException("batch of " + n + " tokens exceeds the routing capacity " + capacity);
        }
        Arrays.fill(start, 0);
        int slots = n * k;
        for (int a = 0; a < slots; a++) {
            int e = expert[a];
            if (e < 0 || e >= experts) {
                throw new IllegalStateException("router selected expert " + e + " of " + experts);
            }
            start[e + 1]++;
        }
        activeCount = 0;
        for (int e = 0; e < experts; e++) {
            if (start[e + 1] > 0) {
                active[activeCount++] = e;
            }
            start[e + 1] += start[e];
        }
        System.arraycopy(start, 0, cursor, 0, experts);
        for (int a = 0; a < slots; a++) {
            int i = cursor[expert[a]]++;
            order[i] = a;
            position[a] = i;
        }
    }
}
