package moe4j.engine.placement;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.stream.Collectors;

import moe4j.engine.placement.ModelFootprint.Part;
import moe4j.engine.placement.ModelFootprint.TensorFootprint;
import moe4j.kernels.quant.InterleavedRows;

/**
 * The planner's answer: the device of every tensor, what each device holds, whether it all fits, and the decode
 * speed the memory bandwidths allow.
 *
 * @param model            the model placed
 * @param request          what was asked
 * @param devices          every device, GPUs first, the CPU last
 * @param layers           per layer, where its attention and its experts run
 * @param tensorDevices    tensor name -> device name, in file order
 * @param transfersPerToken times a token's activations change device (the logits' trip to the host included)
 * @param transferSecondsPerToken what those transfers cost a token, latency and bandwidth
 */
public record Placement(ModelFootprint model, PlanRequest request, List<DeviceLoad> devices,
                        List<LayerPlacement> layers, Map<String, String> tensorDevices, int transfersPerToken,
                        double transferSecondsPerToken) {

    /** Rows of the LM head evaluated at once (the engine's head buffer). */
    static final int HEAD_ROWS = 32;

    public Placement {
        devices = List.copyOf(devices);
        layers = List.copyOf(layers);
        tensorDevices = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(tensorDevices));
    }

    /** True when every device holds its share within its capacity less the margin. */
    public boolean fits() {
        return devices.stream().allMatch(DeviceLoad::fits);
    }

    /** Empty when it fits; otherwise which devices are short, by how much, and of what. */
    public String message() {
        return devices.stream().filter(d -> !d.fits()).map(Placement::shortfall).collect(Collectors.joining("; "));
    }

    private static String shortfall(DeviceLoad d) {
        DeviceSpec s = d.device();
        return String.format(Locale.ROOT, "%s (%s) is short by %s: it needs %s (weights %s, KV cache %s, scratch %s)"
                        + " but has %s usable (%s less a %s margin)", s.name(), s.hardware(),
                ByteSize.format(-d.freeBytes()), ByteSize.format(d.totalBytes()), ByteSize.format(d.weightsBytes()),
                ByteSize.format(d.kvBytes()), ByteSize.format(d.scratchBytes()), ByteSize.format(d.usableBytes()),
                ByteSize.format(s.capacityBytes()), ByteSize.format(d.marginBytes()));
    }

    /** @throws NoSuchElementException when there is no such device */
    public DeviceLoad device(String name) {
        return devices.stream().filter(d -> d.device().name().equals(name)).findFirst()
                .orElseThrow(() -> new NoSuchElementException("no device " + name));
    }

    /** Whether device {@code name} is a GPU. */
    public boolean isGpu(String name) {
        return device(name).device().isGpu();
    }

    /** @throws NoSuchElementException when the model has no such tensor */
    public String deviceOf(String tensor) {
        String d = tensorDevices.get(tensor);
        if (d == null) {
            throw new NoSuchElementException("no tensor " + tensor + " in " + model.name());
        }
        return d;
    }

    /** Decode speed at batch 1 on an empty cache (comparable to llama-bench's tg128). */
    public double estimatedDecodeTokensPerSecond() {
        return estimatedDecodeTokensPerSecond(0);
    }

    /**
     * Decode speed at batch 1 with {@code cachedPositions} positions in the KV cache, bound by memory bandwidth:
     * each device reads what a token touches there (whole attention and head matrices, the chosen experts'
     * slices, the cache) at its peak bandwidth, one device after another, plus the transfers between devices.
     * Compute, kernel launches and attainable (rather than peak) bandwidth are not modelled, so this is a
     * ceiling: real decoding reaches a fraction of it.
     */
    public double estimatedDecodeTokensPerSecond(long cachedPositions) {
        double seconds = transferSecondsPerToken;
        for (DeviceLoad d : devices) {
            seconds += d.readSecondsPerToken(cachedPositions);
        }
        return 1.0 / seconds;
    }

    /** Builds the placement of a finished assignment: {@code where[i]} is the device of tensor {@code i}. */
    static Placement of(ModelFootprint m, PlanRequest r, List<DeviceSpec> specs, List<TensorFootprint> tensors,
                        String[] where) {
        String emb = null;
        String head = null;
        String outNorm = null;
        for (int i = 0; i < tensors.size(); i++) {
            switch (tensors.get(i).part()) {
                case TOKEN_EMBEDDING -> emb = where[i];
                case OUTPUT -> head = where[i];
                case OUTPUT_NORM -> outNorm = where[i];
                default -> { }
            }
        }
        if (head == null) {
            head = outNorm != null ? outNorm : emb;
        }
        boolean headCopy = m.tiedEmbeddings() && !head.equals(emb);

        // the planner places each block whole, so any of a block's tensors tells where it runs
        Blocks blocks = new Blocks(m);
        List<LayerPlacement> layers = new ArrayList<>();
        for (int l = 0; l < m.layers(); l++) {
            String attention = blocks.majority(Blocks.attention(l), where, false);
            if (attention == null) {
                attention = specs.getLast().name();
            }
            String ffn = blocks.majority(Blocks.feedForward(l), where, false);
            if (ffn == null) {
                ffn = attention;
            }
            layers.add(new LayerPlacement(l, attention, m.isMoe() ? ffn : attention, ffn));
        }

        long[] ffnBytes = Planner.ffnBytes(m, tensors);
        Set<String> gpuNames = new HashSet<>();
        specs.stream().filter(DeviceSpec::isGpu).forEach(d -> gpuNames.add(d.name()));
        long kvPerLayer = m.kvBytesPerLayer(r.contextLength(), r.kvType());
        long kvPerPosition = m.kvBytesPerLayer(1, r.kvType());
        List<DeviceLoad> loads = new ArrayList<>();
        for (DeviceSpec s : specs) {
            String name = s.name();
            long weights = 0;
            long read = 0;
            Set<Part> parts = EnumSet.noneOf(Part.class);
            List<String> globals = new ArrayList<>();
            for (int i = 0; i < tensors.size(); i++) {
                if (!where[i].equals(name)) {
                    continue;
                }
                TensorFootprint t = tensors.get(i);
                long held = heldBytes(m, r, s, t, head);
                weights += held;
                read += readPerToken(m, t, held);
                parts.add(t.part());
                if (t.layer() < 0) {
                    globals.add(t.name());
                }
            }
            if (m.tiedEmbeddings() && head.equals(name)) {
                long e = heldBytes(m, r, s, m.tokenEmbedding(), head);
                if (headCopy) {
                    weights += e;
                    globals.add(m.tokenEmbedding().name() + " (LM head copy)");
                }
                read += e;
                parts.add(Part.OUTPUT);
            }
            List<Integer> attentionLayers = new ArrayList<>();
            List<Integer> expertLayers = new ArrayList<>();
            for (LayerPlacement lp : layers) {
                if (lp.attention().equals(name)) {
                    attentionLayers.add(lp.layer());
                }
                if (m.isMoe() && lp.experts().equals(name)) {
                    expertLayers.add(lp.layer());
                }
            }
            long kv = kvPerLayer * attentionLayers.size();
            // a GPU copies in the blocks placed elsewhere of its attention's layers for large batches, into two areas
            // taken in turn (one where a single layer stages)
            long[] stagedHere = new long[m.layers()];
            for (LayerPlacement lp : layers) {
                if (s.isGpu() && lp.attention().equals(name) && !gpuNames.contains(lp.ffn())) {
                    stagedHere[lp.layer()] = ffnBytes[lp.layer()];
                }
            }
            long staging = Planner.stagingBytes(m, r, stagedHere);
            if (staging > 0) {
                parts.addAll(EnumSet.of(Part.FFN_NORM, Part.ROUTER, Part.EXPERTS));   // the blocks' buffers come along
            }
            long scratch = Planner.scratchBytes(m, r.batchSize(), parts, s.isGpu()) + staging;
            loads.add(new DeviceLoad(s, weights, kv, scratch, r.marginBytes(),
                    read, kvPerPosition * attentionLayers.size(), attentionLayers, expertLayers, globals));
        }

        Map<String, DeviceSpec> byName = new LinkedHashMap<>();
        specs.forEach(s -> byName.put(s.name(), s));
        List<String> path = computeOrder(m, tensors, where, head);
        int transfers = 0;
        double seconds = 0;
        long hiddenBytes = (long) m.embd() * Float.BYTES;
        for (int i = 1; i < path.size(); i++) {
            if (!path.get(i).equals(path.get(i - 1))) {
                transfers++;
                seconds += transferSeconds(byName.get(path.get(i - 1)), byName.get(path.get(i)), hiddenBytes);
            }
        }
        DeviceSpec headDevice = byName.get(head);
        if (headDevice.isGpu()) {   // logits go to the host for sampling
            transfers++;
            seconds += transferSeconds(headDevice, specs.getLast(), (long) m.vocab() * Float.BYTES);
        }
        return new Placement(m, r, loads, layers, Planner.byName(tensors, where), transfers, seconds);
    }

    /**
     * Bytes device {@code s} holds for {@code t}: on a GPU, its layout there; on a CPU backend that repacks, the
     * repacked copy of what it multiplies (not the token embedding, which it reads a row at a time as the file has it,
     * unless it is also the head there).
     */
    private static long heldBytes(ModelFootprint m, PlanRequest r, DeviceSpec s, TensorFootprint t, String head) {
        if (s.isGpu()) {
            return t.gpuBytes();
        }
        boolean multiplied = t.part() != Part.TOKEN_EMBEDDING || (m.tiedEmbeddings() && head.equals(s.name()));
        return r.cpuRepack() && multiplied ? t.repackedBytes() : t.bytes();
    }

    /** Bytes of {@code t} a token reads at batch 1 where {@code held} bytes of it are held. */
    private static long readPerToken(ModelFootprint m, TensorFootprint t, long held) {
        return switch (t.part()) {
            case EXPERTS -> Math.round((double) held * m.expertsUsed() / m.experts());
            case TOKEN_EMBEDDING -> t.bytes() / m.vocab();
            default -> held;
        };
    }

    /** The devices a token's hidden state visits: embedding, each layer's tensors in compute order, the head. */
    private static List<String> computeOrder(ModelFootprint m, List<TensorFootprint> tensors, String[] where,
                                             String head) {
        List<List<int[]>> perLayer = new ArrayList<>();
        for (int l = 0; l < m.layers(); l++) {
            perLayer.add(new ArrayList<>());
        }
        List<String> path = new ArrayList<>();
        for (int i = 0; i < tensors.size(); i++) {
            TensorFootprint t = tensors.get(i);
            if (t.layer() >= 0) {
                perLayer.get(t.layer()).add(new int[] {rank(t), i});
            } else if (t.part() == Part.TOKEN_EMBEDDING) {
                path.add(where[i]);
            }
        }
        for (List<int[]> layer : perLayer) {
            layer.sort((a, b) -> a[0] != b[0] ? Integer.compare(a[0], b[0]) : Integer.compare(a[1], b[1]));
            for (int[] e : layer) {
                path.add(where[e[1]]);
            }
        }
        path.add(head);
        return path;
    }

    /** Position of a layer tensor in the layer's computation. */
    private static int rank(TensorFootprint t) {
        String n = t.name().substring(t.name().indexOf('.', 4) + 1);
        String base = n.endsWith(".weight") ? n.substring(0, n.length() - ".weight".length()) : n;
        return switch (base) {
            case "attn_norm" -> 0;
            case "attn_q" -> 1;
            case "attn_k" -> 2;
            case "attn_v" -> 3;
            case "attn_q_norm" -> 4;
            case "attn_k_norm" -> 5;
            case "attn_output" -> 7;
            case "ffn_norm" -> 8;
            case "ffn_gate_inp" -> 9;
            case "ffn_gate_exps", "ffn_gate", "ffn_gate_up_exps" -> 10;
            case "ffn_up_exps", "ffn_up" -> 11;
            case "ffn_down_exps", "ffn_down" -> 12;
            default -> t.part() == Part.ATTENTION ? 6 : 13;
        };
    }

    /** One copy of {@code bytes} from {@code a} to {@code b}; between two GPUs it is staged through the host. */
    private static double transferSeconds(DeviceSpec a, DeviceSpec b, long bytes) {
        double s = 0;
        for (DeviceSpec d : List.of(a, b)) {
            if (d.isGpu()) {
                s += HostLink.TRANSFER_LATENCY_SECONDS + bytes / (d.link().gigabytesPerSecond() * 1e9);
            }
        }
        return s;
    }

    /** A table for people: per device its memory use and layers, the layer map, the fit and the speed. */
    public String explain() {
        StringBuilder b = new StringBuilder();
        ModelFootprint m = model;
        b.append(String.format(Locale.ROOT, "model    %s: %d layers%s, weights %s%n", m.name(), m.layers(),
                m.isMoe() ? ", " + m.experts() + " experts (" + m.expertsUsed() + " used per token)" : "",
                ByteSize.format(m.totalBytes())));
        b.append(String.format(Locale.ROOT, "context  %d positions, KV cache %s (%s per layer), batch %d, margin %s"
                        + " per device%s%n%n", request.contextLength(), request.kvType().name().toLowerCase(Locale.ROOT),
                ByteSize.format(m.kvBytesPerLayer(request.contextLength(), request.kvType())), request.batchSize(),
                ByteSize.format(request.marginBytes()),
                request.cpuRepack() ? ", " + InterleavedRows.types() + " matrices repacked in RAM" : ""));

        List<String[]> rows = new ArrayList<>();
        rows.add(new String[] {"device", "hardware", "bandwidth", "capacity", "weights", "KV cache", "scratch", "free",
                "attention", "experts"});
        for (DeviceLoad d : devices) {
            DeviceSpec s = d.device();
            rows.add(new String[] {s.name(), s.hardware() + (s.isGpu() ? ", " + s.link().label() : ""),
                    String.format(Locale.ROOT, s.memoryGBps() < 100 ? "%.1f GB/s" : "%.0f GB/s", s.memoryGBps()), ByteSize.format(s.capacityBytes()),
                    ByteSize.format(d.weightsBytes()), ByteSize.format(d.kvBytes()), ByteSize.format(d.scratchBytes()),
                    d.fits() ? ByteSize.format(d.freeBytes()) : "short " + ByteSize.format(-d.freeBytes()),
                    ranges(d.attentionLayers()), m.isMoe() ? ranges(d.expertLayers()) : "-"});
        }
        table(b, rows, 2, 7);

        b.append(System.lineSeparator()).append("layers").append(System.lineSeparator());
        int start = 0;
        for (int l = 1; l <= layers.size(); l++) {
            if (l == layers.size() || !sameDevices(layers.get(l), layers.get(start))) {
                LayerPlacement p = layers.get(start);
                String range = start == l - 1 ? Integer.toString(start) : start + "-" + (l - 1);
                b.append(String.format(Locale.ROOT, "  %-9s attention %s%n", range,
                        m.isMoe() ? String.format(Locale.ROOT, "%-7s experts %s", p.attention(), p.experts())
                                : p.ffn().equals(p.attention()) ? p.attention()
                                : String.format(Locale.ROOT, "%-7s ffn %s", p.attention(), p.ffn())));
                start = l;
            }
        }
        Map<String, List<String>> globals = new LinkedHashMap<>();
        for (DeviceLoad d : devices) {
            if (!d.globals().isEmpty()) {
                globals.put(d.device().name(), d.globals());
            }
        }
        b.append("  globals   ").append(globals.entrySet().stream().map(e -> String.join(", ", e.getValue()) + " on "
                + e.getKey()).collect(Collectors.joining("; "))).append(System.lineSeparator()).append(System.lineSeparator());

        if (fits()) {
            b.append("fits: yes").append(System.lineSeparator());
        } else {
            b.append("fits: NO: ").append(message()).append(System.lineSeparator());
        }
        b.append(String.format(Locale.ROOT, "decode ceiling (batch 1, peak bandwidths): %.1f tok/s on an empty cache,"
                        + " %.1f tok/s with %d positions cached%n", estimatedDecodeTokensPerSecond(),
                estimatedDecodeTokensPerSecond(request.contextLength()), request.contextLength()));
        List<String> parts = new ArrayList<>();
        for (DeviceLoad d : devices) {
            if (d.weightsReadPerToken() > 0) {
                parts.add(String.format(Locale.ROOT, "%s %.2f GB (%.1f ms)", d.device().name(),
                        d.weightsReadPerToken() / 1e9, d.readSecondsPerToken(0) * 1e3));
            }
        }
        b.append("  weights read per token: ").append(String.join(", ", parts));
        b.append(String.format(Locale.ROOT, "; %d device changes (%.2f ms)%n", transfersPerToken,
                transferSecondsPerToken * 1e3));
        return b.toString();
    }

    /**
     * The short form a run prints: per device (those holding something) its memory use, the layers whose attention
     * and experts run there, and its global tensors.
     */
    public String summary() {
        List<String[]> rows = new ArrayList<>();
        rows.add(new String[] {"device", "weights", "KV cache", "scratch", "free", "attention", "experts", "globals"});
        for (DeviceLoad d : devices) {
            if (d.isEmpty()) {
                continue;
            }
            rows.add(new String[] {d.device().name(), ByteSize.format(d.weightsBytes()), ByteSize.format(d.kvBytes()),
                    ByteSize.format(d.scratchBytes()),
                    d.fits() ? ByteSize.format(d.freeBytes()) : "short " + ByteSize.format(-d.freeBytes()),
                    ranges(d.attentionLayers()), model.isMoe() ? ranges(d.expertLayers()) : "-",
                    d.globals().isEmpty() ? "-" : String.join(", ", d.globals())});
        }
        StringBuilder b = new StringBuilder();
        table(b, rows, 1, 4);
        return b.toString();
    }

    private static boolean sameDevices(LayerPlacement a, LayerPlacement b) {
        return a.attention().equals(b.attention()) && a.experts().equals(b.experts()) && a.ffn().equals(b.ffn());
    }

    /** {@code [0, 1, 2, 5, 7, 8]} -> {@code "0-2, 5, 7-8"}; empty -> {@code "-"}. */
    static String ranges(List<Integer> xs) {
        if (xs.isEmpty()) {
            return "-";
        }
        List<String> out = new ArrayList<>();
        int start = xs.getFirst();
        int prev = start;
        for (int i = 1; i <= xs.size(); i++) {
            if (i == xs.size() || xs.get(i) != prev + 1) {
                out.add(start == prev ? Integer.toString(start) : start + "-" + prev);
                if (i < xs.size()) {
                    start = xs.get(i);
                }
            }
            if (i < xs.size()) {
                prev = xs.get(i);
            }
        }
        return String.join(", ", out);
    }

    /** Columns {@code numericFrom..numericTo} right-aligned, the others left-aligned. */
    private static void table(StringBuilder b, List<String[]> rows, int numericFrom, int numericTo) {
        int[] width = new int[rows.getFirst().length];
        for (String[] r : rows) {
            for (int i = 0; i < r.length; i++) {
                width[i] = Math.max(width[i], r[i].length());
            }
        }
        for (String[] r : rows) {
            StringBuilder line = new StringBuilder();
            for (int i = 0; i < r.length; i++) {
                boolean number = i >= numericFrom && i <= numericTo;
                String cell = number ? " ".repeat(width[i] - r[i].length()) + r[i]
                        : r[i] + " ".repeat(width[i] - r[i].length());
                line.append(i == 0 ? "" : "  ").append(cell);
            }
            b.append(line.toString().stripTrailing()).append(System.lineSeparator());
        }
    }
}
