package moe4j.engine.placement;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import moe4j.engine.placement.ModelFootprint.Part;
import moe4j.engine.placement.ModelFootprint.TensorFootprint;

/**
 * Decides which device holds each tensor of a model, and whether everything fits.
 *
 * <p>Tensors are placed by block, as the engine runs them (see {@link Blocks}): a layer's attention block (attention
 * norm, projections, Q/K norms) with its KV cache, its feed-forward block (FFN norm, router and experts, or a dense
 * FFN), the head (final norm and LM head). Automatic fitting puts on the GPUs first what every token reads whole:
 * each layer's attention block and KV cache (a dense model's FFN too), and the head. As many layers as fit go to
 * the GPUs (the last ones, so that the token embedding in system RAM is followed by the CPU's layers and then the
 * GPUs' without crossing back), split between the GPUs in contiguous ranges in proportion to the memory each has
 * left. Then each GPU takes the feed-forward blocks of its own MoE layers while they fit: a token reads only
 * {@code expertsUsed/experts} of the experts, so they are worth less per byte than attention. The rest stays in
 * system RAM on the CPU. Every device keeps {@link PlanRequest#marginBytes()} free.
 *
 * <p>The token embedding stays in system RAM, as llama.cpp keeps it: a token reads one row of it, which costs
 * nothing worth a GPU's memory. (With tied embeddings the LM head is a second copy of it on the head's device.)
 *
 * <p>Manual choices replace the automatic ones: {@link PlanRequest#gpuLayers()} fixes the number of GPU layers,
 * {@link PlanRequest#nCpuMoe()} the layers whose experts stay in RAM (the others' follow their layer),
 * {@link PlanRequest#split()} the proportions, and tensor overrides pin tensors before anything else is placed. A
 * block whose anchors (its projections, experts, LM head) are pinned runs where they are pinned, its other tensors
 * following; overrides that would split a block between devices are refused, since the engine cannot run it so.
 * Manual choices that do not fit give a placement with {@code fits() == false}, never an exception.
 */
public final class Planner {

    private Planner() {}

    /**
     * @param devices the GPUs (and any further CPU backend instances, {@code cpu:N}, which take layers as a GPU does),
     *                in order, and the CPU named {@code cpu} (system RAM)
     * @throws IllegalArgumentException when the devices or the request are inconsistent (no CPU, an override or
     *                                  split naming devices that are not there, overrides splitting a block)
     */
    public static Placement plan(ModelFootprint model, List<DeviceSpec> devices, PlanRequest request) {
        Placement placement = new Run(model, devices, request, false).place();
        // room for staging where a GPU ends up with layers whose experts lie in system RAM; it may push further
        // experts off the GPUs, so the placement is made again with it
        return stagesAny(placement, request)
                ? new Run(model, devices, request, true).place()
                : placement;
    }

    /**
     * Activation buffers a device needs for a batch given the parts it holds (the engine's workspace buffers, and on
     * a GPU the copies of a batched product's input that its kernels round to 8 bits, as floats and as int8).
     */
    static long scratchBytes(ModelFootprint m, int batch, Set<Part> parts, boolean gpu) {
        long b = batch;
        long f32 = Float.BYTES;
        boolean layerParts = parts.contains(Part.ATTENTION) || parts.contains(Part.NORM)
                || parts.contains(Part.FFN_NORM) || parts.contains(Part.ROUTER) || parts.contains(Part.EXPERTS)
                || parts.contains(Part.DENSE_FFN);
        long s = 0;
        if (layerParts || parts.contains(Part.TOKEN_EMBEDDING) || parts.contains(Part.OUTPUT)
                || parts.contains(Part.OUTPUT_NORM)) {
            s += b * m.embd() * f32;                                   // hidden state, which visits each of them
        }
        if (layerParts) {
            s += 2 * b * m.embd() * f32;                               // normed input, block output
        }
        if (parts.contains(Part.ATTENTION)) {
            s += b * (2L * m.qDim() + 2L * m.kvDim()) * f32;           // q, k, v, attention output
        }
        if (parts.contains(Part.ROUTER)) {
            s += b * m.experts() * f32 + b * m.expertsUsed() * 8L;     // router logits; chosen ids and weights
        }
        if (parts.contains(Part.EXPERTS)) {
            s += b * m.expertsUsed() * (2L * m.embd() + 2L * m.expertFfn()) * f32; // gathered in/out, gate, up
        }
        if (parts.contains(Part.DENSE_FFN)) {
            s += b * 2L * Math.max(m.ffn(), m.expertFfn()) * f32;      // gate, up
        }
        if (parts.contains(Part.OUTPUT)) {
            s += Math.min(b, Placement.HEAD_ROWS) * ((long) m.embd() + m.vocab()) * f32; // head input, logits
        }
        if (gpu && (parts.contains(Part.ATTENTION) || parts.contains(Part.DENSE_FFN) || parts.contains(Part.OUTPUT)
                || parts.contains(Part.EXPERTS))) {
            long widest = Math.max(m.embd(), parts.contains(Part.ATTENTION) ? m.qDim() : 0);
            if (parts.contains(Part.DENSE_FFN)) {
                widest = Math.max(widest, m.ffn());
            }
            s += b * widest * f32;                                     // the widest input, rounded
            long rows = b * widest;                                    // ... and as int8 for the tensor cores
            if (parts.contains(Part.EXPERTS)) {
                rows = Math.max(rows, b * m.expertsUsed() * Math.max(m.embd(), m.expertFfn()));
            }
            s += rows + rows / 64 + rows / 4;                          // int8, a float per 256, an int per 16
        }
        return s;
    }

    /** One planning run: the working state of the assignment. */
    private static final class Run {
        private final ModelFootprint m;
        private final PlanRequest r;
        private final List<DeviceSpec> gpus = new ArrayList<>();
        private final DeviceSpec cpu;
        private final List<TensorFootprint> tensors;
        private final Blocks blocks;
        /** Device name per tensor index; null until placed. */
        private final String[] where;
        /** The override that pinned each tensor, null where none did. */
        private final TensorOverride[] pinnedBy;
        /** Per block, the device its pinned anchors put it on; null where no anchor is pinned. */
        private final String[] pinnedBlock;
        /**
         * Per layer, the unpinned bytes that go where the layer's attention goes: [0] as a GPU holds them
         * ({@link TensorFootprint#gpuBytes()}), [1] as a further CPU instance does ({@link TensorFootprint#repackedBytes()}
         * where it repacks).
         */
        private final long[][] dense;
        /** Per MoE layer, the unpinned bytes that go where its experts go (its whole feed-forward block); as dense. */
        private final long[][] experts;
        /** What a GPU keeps for the feed-forward blocks of other devices that large batches copy in. */
        private long stagingBytes;
        private final boolean reserveStaging;
        private final long kvPerLayer;
        /** Bytes whose place overrides decide on each GPU: those pinned and those of blocks whose anchors are. */
        private final long[] pinnedOnGpu;
        /** The head's bytes, as {@link #dense}. */
        private final long[] headBytes = new long[2];

        Run(ModelFootprint model, List<DeviceSpec> devices, PlanRequest request, boolean reserveStaging) {
            this.m = model;
            this.r = request;
            this.reserveStaging = reserveStaging;
            DeviceSpec theCpu = null;
            Set<String> names = new HashSet<>();
            for (DeviceSpec d : devices) {
                if (!names.add(d.name())) {
                    throw new IllegalArgumentException("device " + d.name() + " is listed twice");
                }
                if (d.isGpu() || !d.name().equals(DeviceSpec.CPU_NAME)) {
                    gpus.add(d);   // another CPU backend instance (cpu:N) takes layers as a GPU does
                } else {
                    theCpu = d;
                }
            }
            if (theCpu == null) {
                throw new IllegalArgumentException("no CPU device: system RAM (" + DeviceSpec.CPU_NAME
                        + ") must be one of the devices");
            }
            this.cpu = theCpu;
            if (!r.split().isEmpty() && r.split().size() != gpus.size()) {
                throw new IllegalArgumentException("the split has " + r.split().size() + " proportions " + r.split()
                        + " but there are " + gpus.size() + " devices besides " + DeviceSpec.CPU_NAME + " ("
                        + String.join(", ", gpus.stream().map(DeviceSpec::name).toList()) + ")");
            }
            for (TensorOverride o : r.overrides()) {
                if (!names.contains(o.device())) {
                    throw new IllegalArgumentException("tensor override '" + o + "' names device " + o.device()
                            + ", which is not one of: " + String.join(", ", devices.stream().map(DeviceSpec::name).toList()));
                }
            }
            this.tensors = model.tensors();
            this.blocks = new Blocks(model);
            this.where = new String[tensors.size()];
            this.pinnedBy = new TensorOverride[tensors.size()];
            this.dense = new long[2][m.layers()];
            this.experts = new long[2][m.layers()];
            this.kvPerLayer = m.kvBytesPerLayer(r.contextLength(), r.kvType());
            this.pinnedOnGpu = new long[gpus.size()];
            for (int i = 0; i < tensors.size(); i++) {
                for (TensorOverride o : r.overrides()) {
                    if (o.matches(tensors.get(i).name())) {
                        where[i] = o.device();
                        pinnedBy[i] = o;
                        addIfGpu(where[i], tensors.get(i));
                        break;
                    }
                }
            }
            this.pinnedBlock = new String[blocks.count()];
            for (int b = 0; b < pinnedBlock.length; b++) {
                pinnedBlock[b] = blocks.majority(b, where, true);
            }
            for (int i = 0; i < tensors.size(); i++) {
                if (pinnedBy[i] != null) {
                    continue;
                }
                TensorFootprint t = tensors.get(i);
                int b = blocks.of(i);
                if (b >= 0 && !blocks.isAnchor(i) && pinnedBlock[b] != null) {
                    addIfGpu(pinnedBlock[b], t);   // follows its pinned anchors
                } else if (t.layer() >= 0) {
                    long[][] to = m.isMoe() && t.part().feedForward() ? experts : dense;
                    to[0][t.layer()] += t.gpuBytes();
                    to[1][t.layer()] += cpuBytes(t);
                } else if (t.part() != Part.TOKEN_EMBEDDING) {
                    headBytes[0] += t.gpuBytes();
                    headBytes[1] += cpuBytes(t);
                }
            }
            if (reserveStaging) {
                stagingBytes = stagingBytes(m, r, ffnBytes(m, tensors));   // pinned or not, a block is copied whole
            }
            if (m.tiedEmbeddings()) {   // the head's copy, if it goes to a GPU (or a further CPU instance)
                headBytes[0] += m.tokenEmbedding().gpuBytes();
                headBytes[1] += cpuBytes(m.tokenEmbedding());
            }
        }

        /** What a CPU backend holds of {@code t} bound for products. */
        private long cpuBytes(TensorFootprint t) {
            return r.cpuRepack() ? t.repackedBytes() : t.bytes();
        }

        /** 0 for a GPU, 1 for a further CPU instance: which bytes of {@link #dense}, {@link #experts}, {@link #headBytes}. */
        private int kind(int gpu) {
            return gpus.get(gpu).isGpu() ? 0 : 1;
        }

        private void addIfGpu(String device, TensorFootprint t) {
            for (int g = 0; g < gpus.size(); g++) {
                if (gpus.get(g).name().equals(device)) {
                    pinnedOnGpu[g] += kind(g) == 0 ? t.gpuBytes() : cpuBytes(t);
                }
            }
        }

        Placement place() {
            int layers = m.layers();
            boolean manualExperts = r.nCpuMoe() != PlanRequest.AUTO;
            int n;
            int[] owner = null;
            if (gpus.isEmpty()) {
                n = 0;
            } else if (r.gpuLayers() != PlanRequest.AUTO) {
                n = Math.min(r.gpuLayers(), layers);
                owner = distribute(n);
            } else {
                n = 0;
                for (int k = layers; k >= 1; k--) {
                    int[] o = distribute(k);
                    if (o != null && gpuLoadsFit(k, o)) {
                        n = k;
                        owner = o;
                        break;
                    }
                }
            }
            String[] attention = new String[layers];
            String[] expertsAt = new String[layers];
            Arrays.fill(attention, cpu.name());
            Arrays.fill(expertsAt, cpu.name());
            String head = cpu.name();
            if (n > 0) {
                for (int l = layers - n; l < layers; l++) {
                    attention[l] = gpus.get(owner[l]).name();
                    if (manualExperts && l >= r.nCpuMoe()) {
                        expertsAt[l] = attention[l];
                    }
                }
                head = attention[layers - 1];
                if (!manualExperts) {
                    fillExperts(n, owner, expertsAt);
                }
            }
            // the anchors first: they decide where each block runs
            String[] planned = new String[blocks.count()];
            for (int l = 0; l < layers; l++) {
                planned[Blocks.attention(l)] = attention[l];
                planned[Blocks.feedForward(l)] = m.isMoe() ? expertsAt[l] : attention[l];
            }
            planned[blocks.head()] = head;
            for (int i = 0; i < tensors.size(); i++) {
                if (pinnedBy[i] == null && blocks.isAnchor(i)) {
                    where[i] = planned[blocks.of(i)];
                } else if (pinnedBy[i] == null && tensors.get(i).part() == Part.TOKEN_EMBEDDING) {
                    where[i] = cpu.name();
                }
            }
            String[] blockAt = new String[blocks.count()];
            for (int b = 0; b < blockAt.length; b++) {
                String anchored = blocks.majority(b, where, true);
                blockAt[b] = anchored != null ? anchored : planned[b];
            }
            for (int i = 0; i < tensors.size(); i++) {
                if (where[i] == null) {
                    int b = blocks.of(i);
                    where[i] = blockAt[b >= 0 ? b : blocks.head()];
                }
            }
            requireWholeBlocks(blockAt);
            return Placement.of(m, r, allDevices(), tensors, where);
        }

        /**
         * Refuses overrides that leave part of a block away from where it runs: the engine binds a block's tensors
         * on one backend, so it would not run what the placement describes.
         */
        private void requireWholeBlocks(String[] blockAt) {
            for (int i = 0; i < tensors.size(); i++) {
                int b = blocks.of(i);
                if (b < 0 || where[i].equals(blockAt[b])) {
                    continue;
                }
                int other = -1;
                for (int j = 0; j < tensors.size(); j++) {
                    if (blocks.of(j) == b && where[j].equals(blockAt[b])
                            && (other < 0 || (blocks.isAnchor(j) && !blocks.isAnchor(other)))) {
                        other = j;
                    }
                }
                throw new IllegalArgumentException(blocks.describe(b) + " runs on one device, but "
                        + tensors.get(i).name() + " would be on " + where[i] + " (" + why(i) + ") and "
                        + tensors.get(other).name() + " on " + where[other] + " (" + why(other) + "): override all"
                        + " of the block's tensors (" + String.join(", ", blocks.members(b)) + ") or none of them");
            }
        }

        private String why(int i) {
            return pinnedBy[i] != null ? "tensor override '" + pinnedBy[i] + "'" : "placed by the planner";
        }

        private List<DeviceSpec> allDevices() {
            List<DeviceSpec> all = new ArrayList<>(gpus);
            all.add(cpu);
            return all;
        }

        /**
         * GPU index of each of the last {@code n} layers: contiguous ranges in proportion to the split (or to the
         * memory each GPU has left once its fixed costs are paid); null when no GPU has room.
         */
        private int[] distribute(int n) {
            int g = gpus.size();
            double[] w = new double[g];
            for (int i = 0; i < g; i++) {
                w[i] = r.split().isEmpty() ? Math.max(0, usable(i) - fixedCost(i, i == g - 1)) : r.split().get(i);
            }
            double total = Arrays.stream(w).sum();
            if (total <= 0) {
                if (r.gpuLayers() == PlanRequest.AUTO) {
                    return null;
                }
                Arrays.fill(w, 1);
                total = g;
            }
            int[] owner = new int[m.layers()];
            int first = m.layers() - n;
            double cumulative = 0;
            int start = 0;
            for (int i = 0; i < g; i++) {
                cumulative += w[i];
                int end = i == g - 1 ? n : (int) Math.round(n * cumulative / total);
                for (int j = start; j < end; j++) {
                    owner[first + j] = i;
                }
                start = Math.max(start, end);
            }
            return owner;
        }

        /** True when every GPU holds its share of the last {@code n} layers within its usable memory. */
        private boolean gpuLoadsFit(int n, int[] owner) {
            long[] load = gpuLoads(n, owner);
            for (int i = 0; i < gpus.size(); i++) {
                if (load[i] > usable(i)) {
                    return false;
                }
            }
            return true;
        }

        /** Each GPU's bytes with the last {@code n} layers placed, before expert blocks are filled in. */
        private long[] gpuLoads(int n, int[] owner) {
            long[] load = new long[gpus.size()];
            int last = owner[m.layers() - 1];
            for (int i = 0; i < gpus.size(); i++) {
                load[i] = fixedCost(i, i == last);
            }
            for (int l = m.layers() - n; l < m.layers(); l++) {
                int g = owner[l];
                load[g] += dense[kind(g)][l] + kvPerLayer;
                if (r.nCpuMoe() != PlanRequest.AUTO && l >= r.nCpuMoe()) {
                    load[g] += experts[kind(g)][l];
                }
            }
            return load;
        }

        /** The experts of each GPU's layers, in layer order, while they fit. */
        private void fillExperts(int n, int[] owner, String[] expertsAt) {
            long[] load = gpuLoads(n, owner);
            for (int l = m.layers() - n; l < m.layers(); l++) {
                int g = owner[l];
                if (load[g] + experts[kind(g)][l] <= usable(g)) {
                    load[g] += experts[kind(g)][l];
                    expertsAt[l] = gpus.get(g).name();
                }
            }
        }

        /** Pinned tensors, scratch (as if it held every kind of layer part) and, if it is last, the LM head. */
        private long fixedCost(int gpu, boolean holdsHead) {
            Set<Part> parts = EnumSet.of(Part.ATTENTION, Part.NORM, Part.FFN_NORM,
                    m.isMoe() ? Part.EXPERTS : Part.DENSE_FFN);
            if (m.isMoe()) {
                parts.add(Part.ROUTER);
            }
            if (holdsHead) {
                parts.add(Part.OUTPUT);
            }
            boolean isGpu = gpus.get(gpu).isGpu();
            return pinnedOnGpu[gpu] + scratchBytes(m, r.batchSize(), parts, isGpu) + (isGpu ? stagingBytes : 0)
                    + (holdsHead ? headBytes[kind(gpu)] : 0);
        }

        private long usable(int gpu) {
            return gpus.get(gpu).capacityBytes() - r.marginBytes();
        }
    }

    /**
     * Room on a GPU for the mixture-of-experts blocks ({@code ffnBytes} per layer: FFN norm, router, experts) that a
     * batch of at least {@link PlanRequest#stageBatch()} tokens copies in when they lie in system RAM: two areas as
     * large as the largest block (256 bytes of alignment per tensor), taken in turn so that a copy overlaps the
     * previous layer's products, or one where a single layer stages; 0 without experts or staging.
     */
    static long stagingBytes(ModelFootprint m, PlanRequest r, long[] ffnBytes) {
        if (!m.isMoe() || r.stageBatch() == 0 || r.stageBatch() > r.batchSize()) {
            return 0;
        }
        long max = 0;
        int staged = 0;
        for (long b : ffnBytes) {
            max = Math.max(max, b);
            staged += b > 0 ? 1 : 0;
        }
        return max == 0 ? 0 : Math.min(staged, 2) * (max + 5 * 256);
    }

    /** Per layer, the bytes of its feed-forward block (FFN norm, router, experts) as a GPU stages them. */
    static long[] ffnBytes(ModelFootprint m, List<TensorFootprint> tensors) {
        long[] bytes = new long[m.layers()];
        for (TensorFootprint t : tensors) {
            if (t.layer() >= 0 && t.part().feedForward()) {
                bytes[t.layer()] += t.gpuBytes();
            }
        }
        return bytes;
    }

    /** Whether batches would stage a block: a GPU holds the attention of a layer whose block lies in system RAM. */
    static boolean stagesAny(Placement p, PlanRequest r) {
        if (!p.model().isMoe() || r.stageBatch() == 0 || r.stageBatch() > r.batchSize()) {
            return false;
        }
        for (LayerPlacement l : p.layers()) {
            if (p.isGpu(l.attention()) && !p.isGpu(l.ffn())) {
                return true;
            }
        }
        return false;
    }

    /** Tensor name -> device, in file order, for a finished assignment. */
    static Map<String, String> byName(List<TensorFootprint> tensors, String[] where) {
        Map<String, String> map = new LinkedHashMap<>();
        for (int i = 0; i < tensors.size(); i++) {
            map.put(tensors.get(i).name(), where[i]);
        }
        return map;
    }
}
