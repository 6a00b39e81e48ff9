package moe4j.engine;

import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

/**
 * Prompt and generation speed of a model on a device, llama-bench style: {@code ppN} evaluates N
 * random tokens as one batch in a fresh session; {@code tgN} decodes N tokens one at a time after a short
 * prompt, taking the logits of each to the host as generation does. Each figure is the median of
 * {@code reps} runs after one warm-up run. Prints one line per figure; used by bench/gpu-check.sh. With 0 prompt
 * tokens only generation runs, after a one-token prompt: every kernel it launches is a decoding one (for a profiler
 * that counts launches).
 *
 * <pre>GpuBench MODEL.gguf|synthetic:PRESET[:TYPE][/LAYERS] DEVICE [PROMPT_TOKENS [GEN_TOKENS [REPS]]]</pre>
 */
public final class GpuBench {

    private GpuBench() {}

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Exception | Error e) {
            e.printStackTrace();
            System.err.println("GpuBench: error: " + e.getMessage());
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: GpuBench MODEL.gguf|synthetic:PRESET[:TYPE][/LAYERS] cpu|cuda[:N] "
                    + "[PROMPT_TOKENS [GEN_TOKENS [REPS]]]");
            System.exit(2);
        }
        String source = args[0];
        Device device = Device.parse(args[1]);
        int pp = args.length > 2 ? Integer.parseInt(args[2]) : 512;
        int tg = args.length > 3 ? Integer.parseInt(args[3]) : 128;
        int reps = args.length > 4 ? Integer.parseInt(args[4]) : 3;

        long t0 = System.nanoTime();
        int warm = pp > 0 ? Math.min(16, pp) : 1;   // the prompt generation starts from
        LoadOptions options = LoadOptions.defaults().withDevice(device).withBatchSize(Math.max(pp, warm))
                .withContextLength(pp + tg + 64);
        try (Model model = BenchModels.load(source, options)) {
            double load = (System.nanoTime() - t0) / 1e9;
            System.out.printf(Locale.ROOT, "model %s on %s, loaded in %.1f s%n", BenchModels.name(source),
                    model.backendDescription(), load);
            Random random = new Random(1);
            int vocab = model.config().vocab();
            int[] prompt = random.ints(Math.max(pp, warm), 0, vocab).toArray();
            double[] ppRate = new double[pp > 0 ? reps : 0];
            for (int r = pp > 0 ? -1 : 0; r < ppRate.length; r++) {
                try (Session s = model.newSession()) {
                    float[] logits = new float[vocab];
                    long start = System.nanoTime();
                    s.evaluate(prompt, 0, pp, logits);
                    double seconds = (System.nanoTime() - start) / 1e9;
                    if (r >= 0) {
                        ppRate[r] = pp / seconds;
                    }
                }
            }
            double[] tgRate = new double[reps];
            int[] one = new int[1];
            for (int r = -1; r < reps; r++) {
                try (Session s = model.newSession()) {
                    float[] logits = new float[vocab];
                    s.evaluate(Arrays.copyOf(prompt, warm), 0, warm, logits);
                    long start = System.nanoTime();
                    for (int i = 0; i < tg; i++) {
                        one[0] = argmax(logits);
                        s.evaluate(one, 0, 1, logits);
                    }
                    double seconds = (System.nanoTime() - start) / 1e9;
                    if (r >= 0) {
                        tgRate[r] = tg / seconds;
                    }
                }
            }
            if (pp > 0) {
                System.out.printf(Locale.ROOT, "pp%d %.1f tok/s (runs %s)%n", pp, median(ppRate), format(ppRate));
            }
            System.out.printf(Locale.ROOT, "tg%d %.1f tok/s (runs %s)%n", tg, median(tgRate), format(tgRate));
        }
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

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static String format(double[] v) {
        StringBuilder sb = new StringBuilder();
        for (double x : v) {
            sb.append(sb.isEmpty() ? "" : " ").append(String.format(Locale.ROOT, "%.1f", x));
        }
        return sb.toString();
    }
}
