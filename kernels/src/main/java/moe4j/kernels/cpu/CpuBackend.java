package moe4j.kernels.cpu;

import static moe4j.kernels.BackendChecks.requireRows;
import static moe4j.kernels.BackendChecks.requireWidth;

import java.lang.foreign.Arena;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.BackendChecks;
import moe4j.kernels.ExpertBuffers;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.Rope;
import moe4j.kernels.Weight;
import moe4j.kernels.quant.PreparedActivations;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormat;

/**
 * The CPU backend: f32 activations on the heap, weights read in place from the mapped file, a fixed
 * {@link WorkerPool}. A matrix product first rounds its activation rows as llama.cpp's CPU backend
 * does for the weight type (8-bit blocks for quantized weights, see {@code ActivationRounding}), then
 * runs parallel over units of a few output rows; each unit is multiplied with every token of the batch
 * by its format's {@code dotPreparedRows}, which decodes each weight block once for the whole batch. Every
 * output value is computed by one worker in a fixed order, so results do not depend on the thread
 * count or the batch size.
 */
public final class CpuBackend implements Backend {

    /** Weight rows per work unit of a matrix product for one token (decoding), at least. */
    private static final int ROWS_PER_UNIT = 8;
    /**
     * Weight bytes per work unit for one token, at least: a call of a row kernel costs about as much as a block, so 8
     * short rows (768 values, an expert's down projection: 3 blocks each) streamed 6-13% slower than 32 in JMH;
     * generation of the 12-layer Qwen3-30B-A3B-shaped Q4_K_M model 50.15 -> 50.77 tok/s (eight alternations, 6 of 8
     * faster). Rows of 2048 values and more keep units of 8.
     */
    private static final long UNIT_BYTES = 8 << 10;
    /**
     * Rows per call for batches of tokens: eight row tiles, so that each tile's weights are read ahead while the one
     * before computes ({@code ReadAhead.lines}); measured +3% prompt processing over 8 (16: +1-2%).
     */
    private static final int BATCH_ROWS = 32;
    /** Rows of cheap element-wise work per chunk. */
    private static final int ELEMENTWISE_GRAIN = 16;
    /** Cache positions decoded at a time by attention: a few KiB of floats, reused from L1 by every query head. */
    private static final int ATTENTION_CHUNK = 16;
    /**
     * Prompt tokens that share each decoded chunk of the cache: the chunk is converted once for all of them and stays
     * in L1 while their query heads use it (one token at a time, each token converted the whole prefix again).
     */
    private static final int ATTENTION_TOKENS = 8;

    /** The smallest normal fp16, llama.cpp's lower clamp of the expert weight sum. */
    private static final float WEIGHT_SUM_MIN = 6.103515625e-5f;

    private final WorkerPool pool;
    private final Scratch[] scratch;
    /** Repacked weights, freed when this backend closes. */
    private final Arena repacked = Arena.ofShared();
    private final boolean repack;
    private final AtomicLong repackedBytes = new AtomicLong();

    /** A backend of {@code threads} workers that repacks the weights it binds where that makes its products faster. */
    public CpuBackend(int threads) {
        this(threads, true);
    }

    /**
     * A backend of {@code threads} workers; with {@code repack}, Q4_K, Q5_K and Q6_K matrices (and Q3_K's with 256-bit
     * vectors: {@code InterleavedRows.types()}) are repacked when bound, in
     * groups of 16 rows ({@code InterleavedRows}), as llama.cpp's CPU backend repacks Q4_K: a copy beside the mapped file (whose
     * pages the kernel may then drop) and some time at load, for faster products. Weights bound for lookups
     * ({@link #bindForLookup}) stay as the file has them.
     */
    public CpuBackend(int threads, boolean repack) {
        JitOptions.noteOnce();
        this.repack = repack;
        this.pool = new WorkerPool(threads);
        this.scratch = new Scratch[threads];
        for (int i = 0; i < threads; i++) {
            scratch[i] = new Scratch();
        }
    }

    public int threads() { return pool.threads(); }

    @Override
    public String description() {
        return "cpu (" + pool.threads() + " threads)";
    }

    /** Growable per-worker buffers; each is touched only by its own worker inside one loop. */
    private static final class Scratch {
        float[] scores = new float[0];
        float[] row = new float[0];
        float[] row2 = new float[0];

        float[] scores(int n) { return scores.length >= n ? scores : (scores = new float[n]); }

        float[] row(int n) { return row.length >= n ? row : (row = new float[n]); }

        float[] row2(int n) { return row2.length >= n ? row2 : (row2 = new float[n]); }

    }

    // ---------------------------------------------------------------- resources

    @Override
    public Weight bind(GgufTensor tensor) {
        CpuWeight w = repack ? new CpuWeight(tensor, pool, repacked) : new CpuWeight(tensor);
        repackedBytes.addAndGet(w.repackedBytes());
        return w;
    }

    @Override
    public long repackedBytes() {
        return repackedBytes.get();
    }

    /**
     * Bytes of memory a backend that repacks holds for a tensor of {@code type} and GGUF dimensions {@code dims}
     * ({@code fileBytes} in the file) bound for products: its repacked copy where {@link #bind} makes one on a machine
     * that runs the repacked kernels, else the file's bytes (its mapped pages).
     */
    public static long heldBytes(GgmlType type, long[] dims, long fileBytes) {
        if (dims.length < 2 || !InterleavedRows.fitsShape(type, dims[1], dims[0])) {
            return fileBytes;
        }
        long matrices = 1;
        for (int i = 2; i < dims.length; i++) {
            matrices = Math.multiplyExact(matrices, dims[i]);
        }
        return Math.multiplyExact(InterleavedRows.bytes(type, dims[1], (int) dims[0]), matrices);
    }

    @Override
    public Weight bindForLookup(GgufTensor tensor) {
        return new CpuWeight(tensor);
    }

    @Override
    public Activations allocate(int capacity, int width) {
        return new CpuActivations(capacity, width);
    }

    @Override
    public ExpertRouting allocateRouting(int experts, int k, int capacity) {
        return new ExpertRouting(experts, k, capacity);
    }

    @Override
    public KvCache allocateKvCache(int layers, int contextLength, int kvHeads, int headDim, KvCacheType type) {
        return new CpuKvCache(layers, contextLength, kvHeads, headDim, type);
    }

    @Override
    public void write(float[] src, int srcOffset, Activations dst, int row) {
        CpuActivations d = act(dst);
        Objects.checkIndex(row, d.capacity());
        System.arraycopy(src, srcOffset, d.data, row * d.width(), d.width());
    }

    @Override
    public void read(Activations src, int row, float[] dst, int dstOffset) {
        CpuActivations s = act(src);
        Objects.checkIndex(row, s.capacity());
        System.arraycopy(s.data, row * s.width(), dst, dstOffset, s.width());
    }

    @Override
    public void copyRows(Activations src, int srcRow, Activations dst, int dstRow, int n) {
        CpuActivations s = act(src);
        CpuActivations d = act(dst);
        requireWidth(d, s.width(), "copy destination");
        Objects.checkFromIndexSize(srcRow, n, s.capacity());
        Objects.checkFromIndexSize(dstRow, n, d.capacity());
        System.arraycopy(s.data, srcRow * s.width(), d.data, dstRow * d.width(), n * s.width());
    }

    @Override
    public void close() {
        pool.close();
        repacked.close();
    }

    // ---------------------------------------------------------------- operations
    // Each operation checks its arguments, then hands them to its loop object (below), which the pool runs.

    @Override
    public void embed(Weight table, int[] tokens, int offset, int n, Activations out) {
        CpuWeight w = weight(table);
        CpuActivations o = act(out);
        requireRows(n, o);
        requireWidth(o, w.rowLength(), "embedding output");
        for (int i = 0; i < n; i++) {
            int token = tokens[offset + i];
            if (token < 0 || token >= w.rows()) {
                throw new IllegalArgumentException("token id " + token + " at index " + (offset + i)
                        + " is outside the vocabulary of " + w.rows() + " (" + w.name() + ")");
            }
        }
        embedLoop.run(w, tokens, offset, n, o);
    }

    @Override
    public void matmul(Weight weight, Activations in, Activations out, int n) {
        CpuWeight w = weight(weight);
        CpuActivations x = act(in);
        CpuActivations o = act(out);
        if (w.experts() != 1) {
            throw new IllegalArgumentException("matmul needs a single matrix, " + w.name() + " stacks " + w.experts());
        }
        requireRows(n, x);
        requireRows(n, o);
        requireWidth(x, w.rowLength(), "input of", w.name());
        requireWidth(o, w.rows(), "output of", w.name());
        productLoop.run(w, prepare(x, n, w), o, n);
    }

    /** Rows per work unit of a one-token product with {@code w}: whole multiples of 8, {@link #UNIT_BYTES} at least. */
    private static int oneTokenUnitRows(CpuWeight w) {
        long rows = (UNIT_BYTES + w.rowBytes() - 1) / w.rowBytes();
        int step = Math.max(ROWS_PER_UNIT, w.rowGranule());
        return (int) Math.max(step, (rows + step - 1) / step * step);
    }

    /** Rows per work unit of a product of {@code n} tokens with {@code w}. */
    private static int unitRows(CpuWeight w, int n) {
        return n > 1 ? BATCH_ROWS : oneTokenUnitRows(w);
    }

    /**
     * The first {@code n} rows of {@code x} rounded (and ordered) as {@code w}'s format needs them, once per product
     * (llama.cpp converts activations to the weight type's dot type the same way), in parallel.
     */
    private PreparedActivations prepare(CpuActivations x, int n, CpuWeight w) {
        PreparedActivations p = x.prepared(w.preparation());
        p.reserve(w.format(), n, x.width(), w.preparation().floatCodes());
        prepareLoop.run(x, n, p);
        return p;
    }

    @Override
    public void rmsNorm(Activations in, Weight gain, float eps, Activations out, int n) {
        CpuActivations x = act(in);
        CpuActivations o = act(out);
        float[] g = weight(gain).vector();
        requireRows(n, x);
        requireRows(n, o);
        if (x.width() % g.length != 0 || o.width() != x.width()) {
            throw new IllegalArgumentException("rms norm with gain " + gain.name() + " of " + g.length
                    + " values does not fit rows of " + x.width() + " -> " + o.width());
        }
        rmsNormLoop.run(x, g, eps, o, n);
    }

    @Override
    public void rope(Activations in, int heads, Rope rope, int startPos, int n) {
        CpuActivations x = act(in);
        requireRows(n, x);
        if (heads <= 0 || x.width() % heads != 0 || x.width() / heads < rope.dims()) {
            throw new IllegalArgumentException("cannot apply RoPE over " + rope.dims() + " dims to " + heads
                    + " heads in rows of " + x.width());
        }
        ropeLoop.run(x, heads, rope, startPos, n);
    }

    @Override
    public void storeKv(KvCache cache, int layer, Activations k, Activations v, int startPos, int n) {
        CpuKvCache c = kv(cache);
        CpuActivations ka = act(k);
        CpuActivations va = act(v);
        requireRows(n, ka);
        requireRows(n, va);
        requireWidth(ka, c.kvDim(), "keys");
        requireWidth(va, c.kvDim(), "values");
        Objects.checkIndex(layer, c.layers());
        requirePositions(c, startPos, n);
        storeKvLoop.run(c, layer, ka, va, startPos, n);
    }

    @Override
    public void attention(Activations query, KvCache cache, int layer, AttentionShape shape, int startPos, int n,
                          Activations output) {
        CpuKvCache c = kv(cache);
        CpuActivations q = act(query);
        CpuActivations o = act(output);
        requireRows(n, q);
        requireRows(n, o);
        requireWidth(q, shape.qDim(), "attention query");
        requireWidth(o, shape.qDim(), "attention output");
        if (c.kvDim() != shape.kvDim()) {
            throw new IllegalArgumentException("KV cache holds " + c.kvDim() + " values per position, attention expects "
                    + shape.kvDim());
        }
        if (c.headDim() != shape.headDim() || c.kvHeads() != shape.kvHeads()) {
            throw new IllegalArgumentException("KV cache holds " + c.kvHeads() + " heads of " + c.headDim()
                    + " values, attention expects " + shape.kvHeads() + " of " + shape.headDim());
        }
        Objects.checkIndex(layer, c.layers());
        requirePositions(c, startPos, n);
        attentionLoop.run(q, c, layer, shape, startPos, n, o);
    }

    @Override
    public void add(Activations accumulator, Activations in, int n) {
        CpuActivations acc = act(accumulator);
        CpuActivations x = act(in);
        requireRows(n, acc);
        requireRows(n, x);
        requireWidth(x, acc.width(), "addend");
        addLoop.run(acc, x, n);
    }

    @Override
    public void siluMul(Activations gate, Activations up, int n) {
        CpuActivations g = act(gate);
        CpuActivations u = act(up);
        requireRows(n, g);
        requireRows(n, u);
        requireWidth(u, g.width(), "up projection");
        siluMulLoop.run(g, u, n);
    }

    @Override
    public void routeSoftmaxTopK(Activations logits, int n, ExpertRouting routing) {
        CpuActivations l = act(logits);
        requireRows(n, l);
        requireWidth(l, routing.experts(), "router logits");
        if (n > routing.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " exceeds the routing capacity " + routing.capacity());
        }
        routeLoop.run(l, n, routing);
    }

    @Override
    public void experts(Weight gateW, Weight upW, Weight downW, Activations input, ExpertRouting routing,
                        ExpertBuffers buffers, Activations output, int n) {
        CpuWeight gate = weight(gateW);
        CpuWeight up = weight(upW);
        CpuWeight down = weight(downW);
        CpuActivations x = act(input);
        CpuActivations xs = act(buffers.input());
        CpuActivations g = act(buffers.gate());
        CpuActivations u = act(buffers.up());
        CpuActivations y = act(buffers.output());
        CpuActivations out = act(output);
        BackendChecks.requireExperts(gate, up, down, x, routing, buffers, out, n);
        expertLoop.run(gate, up, down, x, routing, xs, g, u, y, out, n);
    }

    // ---------------------------------------------------------------- loops
    // One object per operation, reused from call to call: a lambda capturing the arguments would be a new object every
    // call, some 250 a decoded token. An operation's arguments stay in its object's fields while the pool runs it; the
    // object's lock keeps concurrent callers of one operation apart (the pool runs one loop at a time anyway).

    private final EmbedLoop embedLoop = new EmbedLoop();
    private final ProductLoop productLoop = new ProductLoop();
    private final PrepareLoop prepareLoop = new PrepareLoop();
    private final RmsNormLoop rmsNormLoop = new RmsNormLoop();
    private final RopeLoop ropeLoop = new RopeLoop();
    private final StoreKvLoop storeKvLoop = new StoreKvLoop();
    private final AttentionLoop attentionLoop = new AttentionLoop();
    private final AddLoop addLoop = new AddLoop();
    private final SiluMulLoop siluMulLoop = new SiluMulLoop();
    private final RouteLoop routeLoop = new RouteLoop();
    private final ExpertLoop expertLoop = new ExpertLoop();

    /** Looks up each token's row of the table. */
    private final class EmbedLoop implements WorkerPool.RangeTask {
        private CpuWeight table;
        private int[] tokens;
        private int offset;
        private CpuActivations out;

        synchronized void run(CpuWeight table, int[] tokens, int offset, int n, CpuActivations out) {
            this.table = table;
            this.tokens = tokens;
            this.offset = offset;
            this.out = out;
            pool.parallelFor(n, 1, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            for (int i = from; i < to; i++) {
                table.decodeRow(0, tokens[offset + i], out.data, i * out.width());
            }
        }
    }

    /** A product of one matrix and {@code n} prepared rows: units of a few output rows, each with every token. */
    private final class ProductLoop implements WorkerPool.RangeTask {
        private CpuWeight w;
        private PreparedActivations x;
        private CpuActivations out;
        private int n;
        private int unitRows;

        synchronized void run(CpuWeight w, PreparedActivations x, CpuActivations out, int n) {
            this.w = w;
            this.x = x;
            this.out = out;
            this.n = n;
            this.unitRows = unitRows(w, n);
            pool.parallelFor(ceilDiv(w.rows(), unitRows), 1, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            for (int u = from; u < to; u++) {
                int r0 = u * unitRows;
                w.dotPreparedRows(0, r0, Math.min(w.rows(), r0 + unitRows) - r0, x, 0, n, out.data, r0, out.width());
            }
        }
    }

    /** Rounds rows for a product ({@link #prepare}). */
    private final class PrepareLoop implements WorkerPool.RangeTask {
        private CpuActivations x;
        private PreparedActivations prepared;

        synchronized void run(CpuActivations x, int n, PreparedActivations prepared) {
            this.x = x;
            this.prepared = prepared;
            pool.parallelFor(n, 1, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            for (int t = from; t < to; t++) {
                prepared.prepareRow(x.data, t * x.width(), t);
            }
        }
    }

    /** RMS norm of each group of {@code gain.length} values (a row, or a head of one). */
    private final class RmsNormLoop implements WorkerPool.RangeTask {
        private CpuActivations x;
        private float[] gain;
        private float eps;
        private CpuActivations out;

        synchronized void run(CpuActivations x, float[] gain, float eps, CpuActivations out, int n) {
            this.x = x;
            this.gain = gain;
            this.eps = eps;
            this.out = out;
            pool.parallelFor(n * (x.width() / gain.length), ELEMENTWISE_GRAIN, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            int group = gain.length;
            float[] in = x.data;
            float[] o = out.data;
            for (int i = from; i < to; i++) {
                int off = i * group;
                double sum = 0;
                for (int j = 0; j < group; j++) {
                    float v = in[off + j];
                    sum += v * v;
                }
                float mean = (float) (sum / group);
                float s = 1.0f / (float) Math.sqrt(mean + eps);
                for (int j = 0; j < group; j++) {
                    o[off + j] = (in[off + j] * s) * gain[j];
                }
            }
        }
    }

    /** Rotates every head of each token by its position's angles. */
    private final class RopeLoop implements WorkerPool.RangeTask {
        private CpuActivations x;
        private int heads;
        private Rope rope;
        private int startPos;

        synchronized void run(CpuActivations x, int heads, Rope rope, int startPos, int n) {
            this.x = x;
            this.heads = heads;
            this.rope = rope;
            this.startPos = startPos;
            pool.parallelFor(n, 1, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            int half = rope.dims() / 2;
            int headDim = x.width() / heads;
            float[] cos = scratch[worker].row(half);
            float[] sin = scratch[worker].row2(half);
            for (int t = from; t < to; t++) {
                rope.angles(startPos + t, cos, sin);
                for (int h = 0; h < heads; h++) {
                    rope.rotate(x.data, t * x.width() + h * headDim, cos, sin);
                }
            }
        }
    }

    /** Writes each token's keys and values into the cache at its position. */
    private final class StoreKvLoop implements WorkerPool.RangeTask {
        private CpuKvCache cache;
        private int layer;
        private CpuActivations keys;
        private CpuActivations values;
        private int startPos;

        synchronized void run(CpuKvCache cache, int layer, CpuActivations keys, CpuActivations values, int startPos,
                              int n) {
            this.cache = cache;
            this.layer = layer;
            this.keys = keys;
            this.values = values;
            this.startPos = startPos;
            pool.parallelFor(n, ELEMENTWISE_GRAIN, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            for (int t = from; t < to; t++) {
                cache.store(layer, 0, startPos + t, keys.data, t * keys.width());
                cache.store(layer, 1, startPos + t, values.data, t * values.width());
            }
        }
    }

    /**
     * Causal attention, a unit per KV head and tile of up to {@link #ATTENTION_TOKENS} tokens: the cache is converted
     * a chunk of {@link #ATTENTION_CHUNK} positions at a time, first the keys for every query head's scores, then after
     * the softmax the values for their weighted sums.
     */
    private final class AttentionLoop implements WorkerPool.RangeTask {
        private CpuActivations q;
        private CpuKvCache cache;
        private int layer;
        private int headDim;
        private int group;
        private int kvHeads;
        private float scale;
        private int startPos;
        private int n;
        private CpuActivations o;

        synchronized void run(CpuActivations q, CpuKvCache cache, int layer, AttentionShape shape, int startPos, int n,
                              CpuActivations o) {
            this.q = q;
            this.cache = cache;
            this.layer = layer;
            this.headDim = shape.headDim();
            this.group = shape.heads() / shape.kvHeads();
            this.kvHeads = shape.kvHeads();
            this.scale = shape.scale();
            this.startPos = startPos;
            this.n = n;
            this.o = o;
            pool.parallelFor(ceilDiv(n, ATTENTION_TOKENS) * kvHeads, 1, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            Scratch s = scratch[worker];
            float[] rows = s.row(ATTENTION_CHUNK * headDim);
            float[] lanes = s.row2(ATTENTION_CHUNK * VectorMath.LANES);
            for (int unit = from; unit < to; unit++) {
                int t0 = unit / kvHeads * ATTENTION_TOKENS;
                int t1 = Math.min(n, t0 + ATTENTION_TOKENS);
                int kvh = unit % kvHeads;
                int maxLen = startPos + t1;
                // token t's head g scores at (t - t0) * group * maxLen + g * maxLen
                float[] scores = s.scores((t1 - t0) * group * maxLen);
                for (int p0 = 0; p0 < maxLen; p0 += ATTENTION_CHUNK) {
                    int count = Math.min(ATTENTION_CHUNK, maxLen - p0);
                    cache.loadRows(layer, 0, kvh, p0, count, rows, 0);
                    for (int t = Math.max(t0, p0 - startPos); t < t1; t++) {
                        int visible = Math.min(count, startPos + t + 1 - p0);
                        int qOff = t * q.width() + kvh * group * headDim;
                        int sOff = (t - t0) * group * maxLen + p0;
                        for (int g = 0; g < group; g++) {
                            VectorMath.dotRows(q.data, qOff + g * headDim, rows, visible, headDim, scale, scores, sOff + g * maxLen,
                                    lanes);
                        }
                    }
                }
                for (int t = t0; t < t1; t++) {
                    for (int g = 0; g < group; g++) {
                        VectorMath.softmax(scores, (t - t0) * group * maxLen + g * maxLen, startPos + t + 1);
                    }
                    int oOff = t * o.width() + kvh * group * headDim;
                    Arrays.fill(o.data, oOff, oOff + group * headDim, 0f);
                }
                for (int p0 = 0; p0 < maxLen; p0 += ATTENTION_CHUNK) {
                    int count = Math.min(ATTENTION_CHUNK, maxLen - p0);
                    cache.loadRows(layer, 1, kvh, p0, count, rows, 0);
                    for (int t = Math.max(t0, p0 - startPos); t < t1; t++) {
                        int visible = Math.min(count, startPos + t + 1 - p0);
                        int oOff = t * o.width() + kvh * group * headDim;
                        int sOff = (t - t0) * group * maxLen + p0;
                        for (int g = 0; g < group; g++) {
                            VectorMath.axpyRows(scores, sOff + g * maxLen, rows, visible, headDim, o.data, oOff + g * headDim);
                        }
                    }
                }
            }
        }
    }

    /** {@code acc += x}, row by row. */
    private final class AddLoop implements WorkerPool.RangeTask {
        private CpuActivations acc;
        private CpuActivations x;

        synchronized void run(CpuActivations acc, CpuActivations x, int n) {
            this.acc = acc;
            this.x = x;
            pool.parallelFor(n, ELEMENTWISE_GRAIN, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            int width = acc.width();
            VectorMath.add(x.data, from * width, acc.data, from * width, (to - from) * width);
        }
    }

    /** {@code gate = silu(gate) * up}, row by row. */
    private final class SiluMulLoop implements WorkerPool.RangeTask {
        private CpuActivations gate;
        private CpuActivations up;

        synchronized void run(CpuActivations gate, CpuActivations up, int n) {
            this.gate = gate;
            this.up = up;
            pool.parallelFor(n, ELEMENTWISE_GRAIN, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            int width = gate.width();
            VectorMath.siluMul(gate.data, up.data, from * width, to * width);
        }
    }

    /** Each token's k best experts by softmax probability, their weights normalized to sum 1. */
    private final class RouteLoop implements WorkerPool.RangeTask {
        private CpuActivations logits;
        private ExpertRouting routing;

        synchronized void run(CpuActivations logits, int n, ExpertRouting routing) {
            this.logits = logits;
            this.routing = routing;
            pool.parallelFor(n, ELEMENTWISE_GRAIN, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            int experts = routing.experts();
            int k = routing.k();
            int[] chosen = routing.expert();
            float[] weights = routing.weight();
            float[] p = scratch[worker].row(experts);
            for (int t = from; t < to; t++) {
                System.arraycopy(logits.data, t * experts, p, 0, experts);
                VectorMath.softmax(p, 0, experts);
                double sum = 0;
                for (int s = 0; s < k; s++) {
                    int best = -1;
                    for (int e = 0; e < experts; e++) {
                        if (p[e] >= 0 && (best < 0 || p[e] > p[best])) {
                            best = e;
                        }
                    }
                    if (best < 0) {
                        throw new IllegalStateException("router probabilities of token " + t + " are not finite");
                    }
                    chosen[t * k + s] = best;
                    weights[t * k + s] = p[best];
                    sum += p[best];
                    p[best] = -1f;
                }
                float total = Math.max((float) sum, WEIGHT_SUM_MIN);
                for (int s = 0; s < k; s++) {
                    weights[t * k + s] /= total;
                }
            }
        }
    }

    /**
     * The routed experts of a batch, in loops over the same arguments ({@link Step}): gathering each expert's rows, the
     * gate and up projections, the down projection and the weighted sum (with the SiLU product and the activations'
     * rounding between them): row {@code i} of the buffers is the {@code i}-th assignment in expert order, so each
     * expert's rows are contiguous.
     */
    private final class ExpertLoop implements WorkerPool.RangeTask {
        /** What the current loop does. */
        private enum Step { GATHER, GATE_UP, DOWN, SUM }

        private Step step;
        private CpuWeight gate;
        private CpuWeight up;
        private CpuWeight down;
        private CpuActivations input;
        private ExpertRouting routing;
        private CpuActivations gathered;
        private CpuActivations gateOut;
        private CpuActivations upOut;
        private CpuActivations expertOut;
        private CpuActivations sum;
        private int n;
        private boolean oneToken;
        private PreparedActivations gateIn;
        private PreparedActivations upIn;
        private PreparedActivations downIn;
        private int unitRows;
        private int units;

        synchronized void run(CpuWeight gate, CpuWeight up, CpuWeight down, CpuActivations input, ExpertRouting routing,
                              CpuActivations gathered, CpuActivations gateOut, CpuActivations upOut,
                              CpuActivations expertOut, CpuActivations sum, int n) {
            this.gate = gate;
            this.up = up;
            this.down = down;
            this.input = input;
            this.routing = routing;
            this.gathered = gathered;
            this.gateOut = gateOut;
            this.upOut = upOut;
            this.expertOut = expertOut;
            this.sum = sum;
            this.n = n;
            int k = routing.k();
            routing.group(n);
            // One token (decoding): every chosen expert multiplies the same row, prepared once instead of gathered
            // and prepared k times (about 40 us a layer on 2 threads). Otherwise each expert's rows are gathered.
            oneToken = n == 1;
            if (!oneToken) {
                step(Step.GATHER, n * k, ELEMENTWISE_GRAIN);
            }
            CpuActivations in = oneToken ? input : gathered;
            int inRows = oneToken ? 1 : n * k;
            gateIn = prepare(in, inRows, gate);
            upIn = up.preparation().equals(gate.preparation()) ? gateIn : prepare(in, inRows, up);
            // gate and up projections of every active expert: one unit = a few rows of one matrix of one expert
            unitRows = unitRows(gate, n);
            units = ceilDiv(gate.rows(), unitRows);
            step(Step.GATE_UP, routing.activeCount() * 2 * units, 1);
            siluMulLoop.run(gateOut, upOut, n * k);
            downIn = prepare(gateOut, n * k, down);
            unitRows = unitRows(down, n);
            units = ceilDiv(down.rows(), unitRows);
            step(Step.DOWN, routing.activeCount() * units, 1);
            step(Step.SUM, n, ELEMENTWISE_GRAIN);
        }

        private void step(Step s, int count, int grain) {
            step = s;
            pool.parallelFor(count, grain, this);
        }

        @Override
        public void run(int from, int to, int worker) {
            switch (step) {
                case GATHER -> gather(from, to);
                case GATE_UP -> gateUp(from, to);
                case DOWN -> down(from, to);
                case SUM -> sum(from, to);
            }
        }

        private void gather(int from, int to) {
            int k = routing.k();
            int embd = input.width();
            int[] order = routing.order();
            for (int i = from; i < to; i++) {
                System.arraycopy(input.data, (order[i] / k) * embd, gathered.data, i * embd, embd);
            }
        }

        private void gateUp(int from, int to) {
            int[] active = routing.active();
            int[] start = routing.start();
            int ffn = gate.rows();
            for (int unit = from; unit < to; unit++) {
                int e = active[unit / (2 * units)];
                int rest = unit % (2 * units);
                boolean isGate = rest < units;
                CpuWeight w = isGate ? gate : up;
                PreparedActivations xp = isGate ? gateIn : upIn;
                CpuActivations dst = isGate ? gateOut : upOut;
                int r0 = (rest % units) * unitRows;
                w.dotPreparedRows(e, r0, Math.min(ffn, r0 + unitRows) - r0, xp, oneToken ? 0 : start[e],
                        start[e + 1] - start[e], dst.data, start[e] * ffn + r0, ffn);
            }
        }

        private void down(int from, int to) {
            int[] active = routing.active();
            int[] start = routing.start();
            int embd = down.rows();
            for (int unit = from; unit < to; unit++) {
                int e = active[unit / units];
                int r0 = (unit % units) * unitRows;
                down.dotPreparedRows(e, r0, Math.min(embd, r0 + unitRows) - r0, downIn, start[e],
                        start[e + 1] - start[e], expertOut.data, start[e] * embd + r0, embd);
            }
        }

        /** Weights each expert's output and sums a token's experts in selection order. */
        private void sum(int from, int to) {
            int k = routing.k();
            int embd = sum.width();
            int[] slotOf = routing.position();
            float[] weights = routing.weight();
            float[] out = sum.data;
            float[] y = expertOut.data;
            for (int t = from; t < to; t++) {
                int o = t * embd;
                for (int s = 0; s < k; s++) {
                    int a = t * k + s;
                    float wa = weights[a];
                    int yOff = slotOf[a] * embd;
                    if (s == 0) {
                        for (int j = 0; j < embd; j++) {
                            out[o + j] = y[yOff + j] * wa;
                        }
                    } else {
                        for (int j = 0; j < embd; j++) {
                            out[o + j] += y[yOff + j] * wa;
                        }
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- checks

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    private static CpuActivations act(Activations a) {
        return BackendChecks.buffer(a, CpuActivations.class, "CPU");
    }

    private static CpuWeight weight(Weight w) {
        return BackendChecks.weight(w, CpuWeight.class, "CPU");
    }

    private static CpuKvCache kv(KvCache c) {
        return BackendChecks.kvCache(c, CpuKvCache.class, "CPU");
    }

    private static void requirePositions(CpuKvCache c, int startPos, int n) {
        BackendChecks.requirePositions(c.contextLength(), startPos, n);
    }
}
