package moe4j.engine.sampling;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;

import org.junit.jupiter.api.Test;

class SamplerTest {

    private static final int VOCAB = 1000;

    private static float[] randomLogits(long seed) {
        Random r = new Random(seed);
        float[] l = new float[VOCAB];
        for (int i = 0; i < VOCAB; i++) {
            l[i] = (float) r.nextGaussian() * 3;
        }
        return l;
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

    /** Softmax in double, for checking distributions. */
    private static double[] softmax(float[] x, double temperature) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) {
            max = Math.max(max, v);
        }
        double[] p = new double[x.length];
        double sum = 0;
        for (int i = 0; i < x.length; i++) {
            p[i] = Math.exp((x[i] - max) / temperature);
            sum += p[i];
        }
        for (int i = 0; i < x.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    @Test
    void greedyPicksTheArgmax() {
        Sampler s = new Sampler(SamplerSettings.greedy(), VOCAB);
        for (long seed = 0; seed < 20; seed++) {
            float[] l = randomLogits(seed);
            assertEquals(argmax(l), s.sample(l));
        }
        float[] tie = new float[VOCAB];
        tie[7] = 5;
        tie[3] = 5;
        assertEquals(3, s.sample(tie), "ties go to the lowest id");
    }

    @Test
    void theSameSeedReproducesTheSameTokens() {
        SamplerSettings settings = SamplerSettings.defaults(1234).withTemperature(1.5f).withTopK(0).withMinP(0);
        int[][] runs = new int[3][50];
        for (int run = 0; run < 3; run++) {
            Sampler s = new Sampler(run < 2 ? settings : settings.withSeed(99), VOCAB);
            for (int i = 0; i < 50; i++) {
                runs[run][i] = s.sample(randomLogits(i));
            }
        }
        assertArrayEquals(runs[0], runs[1]);
        assertNotEquals(java.util.Arrays.toString(runs[0]), java.util.Arrays.toString(runs[2]), "another seed differs");
        Sampler again = new Sampler(settings, VOCAB);
        again.sample(randomLogits(0));
        again.reset();
        assertEquals(runs[0][0], again.sample(randomLogits(0)), "reset restarts the random sequence");
    }

    @Test
    void topKKeepsExactlyTheKMostLikely() {
        float[] l = randomLogits(5);
        Sampler s = new Sampler(SamplerSettings.defaults(1).withTopK(10).withTopP(1f).withMinP(0f).withTemperature(1f), VOCAB);
        double[] p = s.distribution(l);
        Integer[] order = java.util.stream.IntStream.range(0, VOCAB).boxed()
                .sorted((a, b) -> Float.compare(l[b], l[a])).toArray(Integer[]::new);
        double[] full = softmax(l, 1);
        double topMass = 0;
        for (int i = 0; i < 10; i++) {
            topMass += full[order[i]];
        }
        for (int i = 0; i < VOCAB; i++) {
            int t = order[i];
            if (i < 10) {
                assertEquals(full[t] / topMass, p[t], 1e-9, "rank " + i);
            } else {
                assertEquals(0, p[t], "rank " + i + " is masked");
            }
        }
        for (int i = 0; i < 200; i++) {
            int tok = s.sample(l);
            assertTrue(p[tok] > 0, "sampled a masked token " + tok);
        }
    }

    @Test
    void topPKeepsTheSmallestPrefixReachingP() {
        float[] l = new float[VOCAB];
        java.util.Arrays.fill(l, -20f);
        l[1] = 3f;
        l[2] = 2f;
        l[3] = 1f;
        l[4] = 0f;
        double[] full = softmax(l, 1);
        double p = full[1] + full[2] + 0.5 * full[3];  // needs tokens 1, 2 and 3
        Sampler s = new Sampler(SamplerSettings.defaults(1).withTopK(0).withMinP(0f).withTopP((float) p)
                .withTemperature(1f), VOCAB);
        double[] dist = s.distribution(l);
        double mass = full[1] + full[2] + full[3];
        assertEquals(full[1] / mass, dist[1], 1e-9);
        assertEquals(full[3] / mass, dist[3], 1e-9);
        assertEquals(0, dist[4]);
        assertEquals(0, dist[0]);
    }

    @Test
    void minPDropsTokensFarLessLikelyThanTheBest() {
        float[] l = new float[VOCAB];
        java.util.Arrays.fill(l, -30f);
        l[10] = 0f;
        l[11] = (float) Math.log(0.2);   // 0.2 x the best: kept at min-p 0.1
        l[12] = (float) Math.log(0.05);  // 0.05 x the best: dropped
        Sampler s = new Sampler(SamplerSettings.defaults(1).withTopK(0).withTopP(1f).withMinP(0.1f).withTemperature(1f), VOCAB);
        double[] dist = s.distribution(l);
        assertEquals(1 / 1.2, dist[10], 1e-6);
        assertEquals(0.2 / 1.2, dist[11], 1e-6);
        assertEquals(0, dist[12]);
    }

    @Test
    void temperatureSharpensOrFlattens() {
        float[] l = randomLogits(8);
        double[] expected = softmax(l, 0.5);
        Sampler s = new Sampler(SamplerSettings.defaults(1).withTopK(0).withTopP(1f).withMinP(0f).withTemperature(0.5f), VOCAB);
        double[] dist = s.distribution(l);
        for (int i = 0; i < VOCAB; i++) {
            assertEquals(expected[i], dist[i], 1e-9);
        }
    }

    /** Ratio of two tokens' probabilities under temperature 1 and no filters: exp of their logit gap. */
    private static double ratio(Sampler s, float[] l, int a, int b) {
        double[] p = s.distribution(l);
        return p[a] / p[b];
    }

    private static Sampler penalized(float repeat, float presence, float frequency, int... seen) {
        Sampler s = new Sampler(SamplerSettings.greedy().withTemperature(1f).withTopK(0).withMinP(0f)
                .withPenalties(repeat, presence, frequency, 8), VOCAB);
        for (int t : seen) {
            s.accept(t);
        }
        return s;
    }

    @Test
    void penaltiesFollowLlamaCppRules() {
        float[] l = new float[VOCAB];
        l[1] = 2f;
        l[2] = -2f;
        l[4] = 0.5f;
        // repeat: positive logits are divided, negative ones multiplied
        Sampler repeat = penalized(2f, 0f, 0f, 1, 2, 1);
        assertEquals(Math.exp(1.0 - 0.5), ratio(repeat, l, 1, 4), 1e-6);
        assertEquals(Math.exp(-4.0 - 0.5), ratio(repeat, l, 2, 4), 1e-6);
        // frequency: subtracted per occurrence
        assertEquals(Math.exp(2 - 3 * 0.25 - 0.5), ratio(penalized(1f, 0f, 0.25f, 1, 1, 1), l, 1, 4), 1e-6);
        // presence: subtracted once
        assertEquals(Math.exp(2 - 0.7 - 0.5), ratio(penalized(1f, 0.7f, 0f, 1, 1, 1), l, 1, 4), 1e-6);
        // greedy decisions see the penalized logits
        Sampler greedy = new Sampler(SamplerSettings.greedy().withPenalties(1f, 1.8f, 0f, 8), VOCAB);
        assertEquals(1, greedy.sample(l));
        greedy.accept(1);
        assertEquals(4, greedy.sample(l), "2 - 1.8 = 0.2 < 0.5");
    }

    @Test
    void penaltiesOnlySeeTheLastNTokens() {
        float[] l = new float[VOCAB];
        l[1] = 2f;
        l[3] = 1f;
        Sampler s = new Sampler(SamplerSettings.greedy().withPenalties(1f, 5f, 0f, 2), VOCAB);
        s.accept(1);
        assertEquals(3, s.sample(l));
        s.accept(7);
        s.accept(8);   // token 1 left the window of 2
        assertEquals(1, s.sample(l));
    }

    @Test
    void rejectsInvalidSettingsAndLogits() {
        assertThrows(IllegalArgumentException.class, () -> SamplerSettings.greedy().withTopP(0f));
        assertThrows(IllegalArgumentException.class, () -> SamplerSettings.greedy().withMinP(1.5f));
        assertThrows(IllegalArgumentException.class, () -> SamplerSettings.greedy().withPenalties(0f, 0f, 0f, 64));
        Sampler s = new Sampler(SamplerSettings.greedy(), VOCAB);
        assertThrows(IllegalArgumentException.class, () -> s.sample(new float[VOCAB - 1]));
        float[] nan = new float[VOCAB];
        nan[5] = Float.NaN;
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.sample(nan));
        assertTrue(e.getMessage().contains("token 5"), e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> s.accept(VOCAB));
    }
}
