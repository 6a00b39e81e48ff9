package moe4j.engine;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Random;

import moe4j.kernels.cuda.CudaProfile;

/**
 * Where the GPU time of a decode step and of a prompt batch goes: runs a few decode steps (direct launches,
 * no graph) and one prompt batch with every CUDA operation timed by events ({@link CudaProfile}), then prints
 * one table per phase, slowest operation first: calls and GPU microseconds per token (per batch for the
 * prompt), microseconds per call, and the rate of the bytes the operation reads from weights or the KV cache
 * (GB/s) or of its products' flops (GFLOP/s). Used by bench/gpu-check.sh.
 *
 * <pre>GpuProfile MODEL.gguf|synthetic:PRESET[:TYPE][/LAYERS] cuda[:N]
 *     [PROMPT_TOKENS [DECODE_TOKENS [decode|all]]]</pre>
 *
 * Times are the kernels' own, each started on an idle stream after a short device-side wait (see
 * {@link CudaProfile}); a recorded decode graph runs the same kernels back to back, so their sum is close to
 * its time per token less the host's share (the logits copy, the launch).
 */
public final class GpuProfile {

    private GpuProfile() {}

    public static void main(String[] args) {
        if (System.getProperty("moe4j.cuda.profile") == null) {
            System.setProperty("moe4j.cuda.profile", "true");  // before the CUDA classes load
        }
        try {
            run(args);
        } catch (Exception | Error e) {
            e.printStackTrace();
            System.err.println("GpuProfile: error: " + e.getMessage());
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: GpuProfile MODEL.gguf|synthetic:PRESET[:TYPE][/LAYERS] cuda[:N] "
                    + "[PROMPT_TOKENS [DECODE_TOKENS [decode|all]]]");
            System.exit(2);
        }
        if (!CudaProfile.enabled()) {
            throw new IllegalStateException("run with -Dmoe4j.cuda.profile=true");
        }
        String source = args[0];
        Device device = Device.parse(args[1]);
        int pp = args.length > 2 ? Integer.parseInt(args[2]) : 512;
        int tg = args.length > 3 ? Integer.parseInt(args[3]) : 8;
        boolean prompt = args.length <= 4 || !args[4].equals("decode");
        int context = 76;  // the decode steps then run at positions 80.., the middle of tg128 after 16 prompt tokens

        LoadOptions options = LoadOptions.defaults().withDevice(device).withBatchSize(Math.max(pp, context))
                .withContextLength(Math.max(pp, context + tg + 4) + 64);
        try (Model model = BenchModels.load(source, options)) {
            System.out.printf(Locale.ROOT, "profile %s on %s%n", BenchModels.name(source), model.backendDescription());
            int vocab = model.config().vocab();
            int[] tokens = new Random(1).ints(Math.max(pp, context), 0, vocab).toArray();
            float[] logits = new float[vocab];
            int[] one = new int[1];
            try (Session s = model.newSession()) {
                s.evaluate(tokens, 0, context, logits);
                for (int i = 0; i < 4; i++) {  // warm-up: the host code compiled
                    one[0] = argmax(logits);
                    s.evaluate(one, 0, 1, logits);
                }
                CudaProfile.take();
                for (int i = 0; i < tg; i++) {
                    one[0] = argmax(logits);
                    s.evaluate(one, 0, 1, logits);
                }
                print("decode, per token (" + tg + " tokens at positions " + (context + 4) + ".."
                        + (context + 3 + tg) + ")", CudaProfile.take(), tg, false);
            }
            if (prompt) {
                for (int r = 0; r < 2; r++) {  // a warm-up batch, then the one timed
                    try (Session s = model.newSession()) {
                        CudaProfile.take();
                        s.evaluate(tokens, 0, pp, logits);
                    }
                }
                print("prompt, one batch of " + pp + " tokens", CudaProfile.take(), 1, true);
            }
        }
    }

    private static void print(String title, List<CudaProfile.Op> ops, int per, boolean flops) {
        List<CudaProfile.Op> sorted = new ArrayList<>(ops);
        CudaProfile.Op empty = null;
        for (CudaProfile.Op op : ops) {
            if (op.name().equals(CudaProfile.CALIBRATION)) {
                empty = op;
                sorted.remove(op);
            }
        }
        sorted.sort(Comparator.comparingDouble(CudaProfile.Op::micros).reversed());
        double total = sorted.stream().mapToDouble(CudaProfile.Op::micros).sum();
        long bytes = sorted.stream().mapToLong(CudaProfile.Op::bytes).sum();
        long calls = sorted.stream().mapToLong(CudaProfile.Op::calls).sum();
        System.out.printf(Locale.ROOT, "== %s: GPU %.0f us, %d launches, %.1f MB read from weights/cache (%.0f GB/s)%n",
                title, total / per, calls / per, bytes / 1e6 / per, bytes / (total * 1e3));
        System.out.printf(Locale.ROOT, "%-44s %6s %9s %5s %8s %7s%n", "operation", "calls", "us", "%", "us/call",
                flops ? "GFLOP/s" : "GB/s");
        for (CudaProfile.Op op : sorted) {
            double us = op.micros() / per;
            double rate = flops ? op.flops() / (op.micros() * 1e3) : op.bytes() / (op.micros() * 1e3);
            System.out.printf(Locale.ROOT, "%-44s %6s %9.1f %5.1f %8.2f %7s%n", shorten(op.name()),
                    op.calls() % per == 0 ? String.valueOf(op.calls() / per)
                            : String.format(Locale.ROOT, "%.1f", (double) op.calls() / per),
                    us, 100 * op.micros() / total, op.micros() / op.calls(),
                    (flops ? op.flops() : op.bytes()) > 0 ? String.format(Locale.ROOT, "%.0f", rate) : "");
        }
        if (empty != null) {
            System.out.printf(Locale.ROOT, "(an empty kernel measures %.2f us: part of every call's time above)%n",
                    empty.micros() / empty.calls());
        }
    }

    private static String shorten(String name) {
        return name.length() <= 44 ? name : name.substring(0, 43) + "~";
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
}
