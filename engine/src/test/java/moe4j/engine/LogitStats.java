package moe4j.engine;

/**
 * Agreement of two sets of per-position logits: mean and max of KL(p_ref || p_ours) over positions
 * (softmax in double) and the fraction of positions whose argmax agrees.
 */
record LogitStats(double meanKl, double maxKl, double top1, double maxAbsDiff) {

    static LogitStats compare(float[][] reference, float[][] ours) {
        if (reference.length != ours.length) {
            throw new IllegalArgumentException(reference.length + " reference positions vs " + ours.length);
        }
        double klSum = 0;
        double klMax = 0;
        int agree = 0;
        double maxAbs = 0;
        for (int i = 0; i < reference.length; i++) {
            double kl = kl(reference[i], ours[i]);
            klSum += kl;
            klMax = Math.max(klMax, kl);
            if (argmax(reference[i]) == argmax(ours[i])) {
                agree++;
            }
            for (int j = 0; j < reference[i].length; j++) {
                maxAbs = Math.max(maxAbs, Math.abs((double) reference[i][j] - ours[i][j]));
            }
        }
        return new LogitStats(klSum / reference.length, klMax, (double) agree / reference.length, maxAbs);
    }

    /** ||ours - ref|| / ||ref|| over one position's logits (Euclidean norms, in double). */
    static double relativeDistance(float[] ref, float[] ours) {
        double diff = 0;
        double norm = 0;
        for (int j = 0; j < ref.length; j++) {
            double d = (double) ours[j] - ref[j];
            diff += d * d;
            norm += (double) ref[j] * ref[j];
        }
        return Math.sqrt(diff / norm);
    }

    static double kl(float[] ref, float[] ours) {
        double[] lp = logSoftmax(ref);
        double[] lq = logSoftmax(ours);
        double kl = 0;
        for (int j = 0; j < lp.length; j++) {
            kl += Math.exp(lp[j]) * (lp[j] - lq[j]);
        }
        return Math.max(0, kl);
    }

    static double[] logSoftmax(float[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : x) {
            sum += Math.exp(v - max);
        }
        double lse = max + Math.log(sum);
        double[] out = new double[x.length];
        for (int j = 0; j < x.length; j++) {
            out[j] = x[j] - lse;
        }
        return out;
    }

    static int argmax(float[] x) {
        int best = 0;
        for (int j = 1; j < x.length; j++) {
            if (x[j] > x[best]) {
                best = j;
            }
        }
        return best;
    }
}
