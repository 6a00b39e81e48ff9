package moe4j.engine.sampling;

import java.util.Arrays;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits according to {@link SamplerSettings}. Keeps the recent tokens for
 * the penalties ({@link #accept}) and a random generator seeded from the settings, so a sampler fed
 * the same tokens and logits makes the same choices. Buffers are sized once for the vocabulary: sampling
 * allocates nothing. Not thread-safe; one per generation.
 */
public final class Sampler {

    private final SamplerSettings settings;
    private final int vocab;
    private final float[] work;
    private final long[] keys;
    private final double[] weights;
    private final int[] counts;
    private final boolean[] marked;
    private final int[] window;
    private int windowStart;
    private int windowSize;
    private SplittableRandom random;

    public Sampler(SamplerSettings settings, int vocab) {
        this.settings = Objects.requireNonNull(settings, "settings");
        if (vocab <= 0) {
            throw new IllegalArgumentException("vocabulary size must be positive, got " + vocab);
        }
        this.vocab = vocab;
        this.work = new float[vocab];
        this.keys = new long[vocab];
        this.weights = new double[vocab];
        this.counts = new int[vocab];
        this.marked = new boolean[vocab];
        this.window = new int[Math.max(1, settings.penaltyLastN())];
        this.random = new SplittableRandom(settings.seed());
    }

    public SamplerSettings settings() { return settings; }

    /** Records a token of the context (prompt or generated) for the repetition penalties. */
    public void accept(int token) {
        Objects.checkIndex(token, vocab);
        if (settings.penaltyLastN() == 0) {
            return;
        }
        if (windowSize == window.length) {
            counts[window[windowStart]]--;
            window[windowStart] = token;
            windowStart = (windowStart + 1) % window.length;
        } else {
            window[(windowStart + windowSize) % window.length] = token;
            windowSize++;
        }
        counts[token]++;
    }

    /** Forgets the recorded tokens and restarts the random sequence from the seed. */
    public void reset() {
        Arrays.fill(counts, 0);
        windowStart = 0;
        windowSize = 0;
        random = new SplittableRandom(settings.seed());
    }

    /** The chosen token for {@code logits} (at least vocabulary size long; not modified). */
    public int sample(float[] logits) {
        penalize(logits);
        if (settings.isGreedy()) {
            return argmax(work);
        }
        int m = candidates();
        double total = 0;
        for (int i = 0; i < m; i++) {
            total += weights[i];
        }
        double r = random.nextDouble() * total;
        double cumulative = 0;
        for (int i = 0; i < m; i++) {
            cumulative += weights[i];
            if (r < cumulative) {
                return index(keys[i]);
            }
        }
        return index(keys[m - 1]);
    }

    /**
     * The probability of each token under the current settings and history, after every filter and the
     * temperature (greedy: 1 for the argmax). Diagnostic: allocates the result and draws nothing.
     */
    public double[] distribution(float[] logits) {
        double[] p = new double[vocab];
        penalize(logits);
        if (settings.isGreedy()) {
            p[argmax(work)] = 1;
            return p;
        }
        int m = candidates();
        double total = 0;
        for (int i = 0; i < m; i++) {
            total += weights[i];
        }
        for (int i = 0; i < m; i++) {
            p[index(keys[i])] = weights[i] / total;
        }
        return p;
    }

    /** Copies {@code logits} into {@code work} with the repetition penalties applied (llama.cpp's rule). */
    private void penalize(float[] logits) {
        if (logits.length < vocab) {
            throw new IllegalArgumentException("logits array of " + logits.length + " is shorter than the vocabulary " + vocab);
        }
        for (int i = 0; i < vocab; i++) {
            if (Float.isNaN(logits[i])) {
                throw new IllegalStateException("logit of token " + i + " is NaN");
            }
        }
        System.arraycopy(logits, 0, work, 0, vocab);
        if (windowSize == 0 || (settings.repeatPenalty() == 1f && settings.presencePenalty() == 0f
                && settings.frequencyPenalty() == 0f)) {
            return;
        }
        for (int i = 0; i < windowSize; i++) {
            int t = window[(windowStart + i) % window.length];
            if (marked[t]) {
                continue;
            }
            marked[t] = true;
            float l = work[t];
            l = l <= 0 ? l * settings.repeatPenalty() : l / settings.repeatPenalty();
            work[t] = l - counts[t] * settings.frequencyPenalty() - settings.presencePenalty();
        }
        for (int i = 0; i < windowSize; i++) {
            marked[window[(windowStart + i) % window.length]] = false;
        }
    }

    /**
     * Applies top-k, top-p and min-p to {@code work}: leaves the surviving tokens in {@code keys[0..m)},
     * most likely first, with their tempered unnormalized weights in {@code weights[0..m)}; returns m.
     */
    private int candidates() {
        for (int i = 0; i < vocab; i++) {
            keys[i] = key(work[i], i);
        }
        int m = vocab;
        int k = settings.topK();
        if (k > 0 && k < vocab) {
            select(keys, 0, vocab - 1, k);
            m = k;
        }
        Arrays.sort(keys, 0, m);
        float max = work[index(keys[0])];
        if (settings.topP() < 1f) {
            double sum = 0;
            for (int i = 0; i < m; i++) {
                weights[i] = Math.exp(work[index(keys[i])] - max);
                sum += weights[i];
            }
            double cumulative = 0;
            for (int i = 0; i < m; i++) {
                cumulative += weights[i] / sum;
                if (cumulative >= settings.topP()) {
                    m = i + 1;
                    break;
                }
            }
        }
        if (settings.minP() > 0f) {
            double threshold = max + Math.log(settings.minP());
            int kept = 1;
            while (kept < m && work[index(keys[kept])] >= threshold) {
                kept++;
            }
            m = kept;
        }
        double t = settings.temperature();
        for (int i = 0; i < m; i++) {
            weights[i] = Math.exp((work[index(keys[i])] - max) / t);
        }
        return m;
    }

    private static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) {
            if (x[i] > x[best]) {
                best = i;
            }
        }
        return best;
    }

    /** Sorting keys ascending orders by logit descending, then by token id ascending. */
    private static long key(float logit, int token) {
        int bits = Float.floatToIntBits(logit);
        int sortable = bits ^ ((bits >> 31) & 0x7FFFFFFF);
        return ((long) ~sortable << 32) | token;
    }

    private static int index(long key) {
        return (int) key;
    }

    /** Rearranges {@code a[lo..hi]} so that its {@code k} smallest values come first (quickselect). */
    private static void select(long[] a, int lo, int hi, int k) {
        int target = lo + k - 1;
        while (lo < hi) {
            long pivot = medianOfThree(a[lo], a[(lo + hi) >>> 1], a[hi]);
            int i = lo;
            int j = hi;
            while (i <= j) {
                while (a[i] < pivot) {
                    i++;
                }
                while (a[j] > pivot) {
                    j--;
                }
                if (i <= j) {
                    long tmp = a[i];
                    a[i] = a[j];
                    a[j] = tmp;
                    i++;
                    j--;
                }
            }
            if (target <= j) {
                hi = j;
            } else if (target >= i) {
                lo = i;
            } else {
                return;
            }
        }
    }

    private static long medianOfThree(long a, long b, long c) {
        return Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
    }
}
