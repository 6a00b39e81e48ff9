package moe4j.kernels.quant;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

import jdk.incubator.vector.FloatVector;

import moe4j.gguf.GgmlType;

/**
 * Activation rows made ready for one matrix product: rounded as llama.cpp rounds them for the weight type
 * ({@link ActivationRounding}), plus the sum of every 16 consecutive rounded values, which the K-quant
 * kernels use to apply block minimums and offsets once per 16 elements instead of once per element.
 * Reused across products: {@link #reserve} then {@link #prepareRow} for each row (rows may be prepared
 * by different threads). Not otherwise thread-safe.
 *
 * <p>The prompt path's tiles read the values from a 64-byte-aligned off-heap copy: a Java array's elements are
 * only 16-byte aligned, so every 64-byte vector load from one straddles two cache lines, which costs about a
 * third of the load throughput the multiply-add loops depend on. Prepared for a format whose one-token kernel reads
 * activations in a {@link LaneOrder}, the rows are also kept in that order as the rounding's 8-bit codes packed in
 * pairs, with one scale per rounding block.
 */
public final class PreparedActivations {

    /** Values per entry of {@link #sumsArray()}. */
    public static final int SUM_GROUP = 16;

    private ActivationRounding rounding = ActivationRounding.NONE;
    private LaneOrder order = LaneOrder.NATURAL;
    private int rows;
    private int width;
    private float[] values = new float[0];
    private MemorySegment aligned = MemorySegment.NULL;
    private float[] sumsArray = new float[0];
    private int[] codes = new int[0];
    private int[] pairs = new int[0];
    private float[] codeScales = new float[0];
    private int[] tilePairs = new int[0];
    private int[] tileSums = new int[0];
    private int[] groupSums = new int[0];
    private int[] stepPairs = new int[0];
    private GgmlType steppedType;
    private byte[] bytePairs = new byte[0];
    private boolean bytes;
    private float[] floatCodes = new float[0];
    private boolean floats;

    /**
     * Sizes the buffers for {@code rows} rows of {@code width} values made ready for weights of {@code format}: its
     * {@link QuantFormat#activationRounding() rounding} and, for its decoding kernel, its {@link QuantFormat#laneOrder()
     * lane order}.
     */
    public void reserve(QuantFormat format, int rows, int width) {
        reserve(format, rows, width, true);
    }

    /**
     * Whether batches of {@code format}'s rows, repacked ({@link InterleavedRows}) or not, multiply the codes as floats
     * ({@link #floatCodes()}): only repacked Q8_0 and IQ4_XS rows where the vectors are 256 bits do.
     */
    public static boolean readsFloatCodes(QuantFormat format, boolean repackedRows) {
        return repackedRows && format.laneOrder().readByHalves();
    }

    /**
     * {@link #reserve(QuantFormat, int, int)}, with a copy of the codes as floats only where the rows' batches read
     * one ({@code withFloatCodes}, as {@link #readsFloatCodes} tells): a copy as large as the values (some 32 MB for a
     * prompt of 512 tokens), which rows read in the file's layout never need.
     */
    public void reserve(QuantFormat format, int rows, int width, boolean withFloatCodes) {
        // with 256-bit vectors only the repacked types' kernels and Q8_0's and IQ4_XS's read an order (Q2_K's is Q3_K's)
        boolean read = Simd.FUSED || InterleavedRows.repacks(format.type()) || format.laneOrder().readByHalves();
        reserve(format.activationRounding(), read ? format.laneOrder() : LaneOrder.NATURAL, rows, width, withFloatCodes);
        steppedType = stepped(format);
        if (steppedType != null && (order != format.laneOrder() || !tilesRead(order, rows))) {
            steppedType = null;
        }
        if (steppedType != null && stepPairs.length < InterleavedRows.stepCount(steppedType, values.length)) {
            stepPairs = new int[InterleavedRows.stepCount(steppedType, values.length)];
        }
    }

    /**
     * The type of {@code format} when its one-token kernel on this machine reads telescoped pairs
     * ({@link #stepPairs()}), else null: rows prepared for two formats alike but for this differ.
     */
    public static GgmlType stepped(QuantFormat format) {
        return InterleavedRows.steps(format.type()) ? format.type() : null;
    }

    /** Sizes the buffers for {@code rows} rows of {@code width} values rounded by {@code rounding}, in natural order only. */
    public void reserve(ActivationRounding rounding, int rows, int width) {
        reserve(rounding, LaneOrder.NATURAL, rows, width);
    }

    /**
     * Sizes the buffers for {@code rows} rows of {@code width} values rounded by {@code rounding}, with a copy in
     * {@code order} too when it {@link LaneOrder#rearranges() rearranges}, the kernels that read one run here
     * (512-bit vectors) and the rows are whole {@link LaneOrder#BLOCK blocks} of it; otherwise the order is natural and
     * the products take their slower path. An order only pairs the codes of its own rounding.
     */
    public void reserve(ActivationRounding rounding, LaneOrder order, int rows, int width) {
        reserve(rounding, order, rows, width, true);
    }

    private void reserve(ActivationRounding rounding, LaneOrder order, int rows, int width, boolean withFloatCodes) {
        this.rounding = Objects.requireNonNull(rounding, "rounding");
        Objects.requireNonNull(order, "order");
        this.steppedType = null;
        boolean kernelReads = Simd.FUSED || InterleavedRows.available() && InterleavedRows.reads(order)
                || order.readByHalves();
        this.order = kernelReads && width % LaneOrder.BLOCK == 0 ? order : LaneOrder.NATURAL;
        if (rows < 0 || width <= 0 || width % rounding.blockSize() != 0 || width % SUM_GROUP != 0
                || (order.rearranges() && rounding != order.rounding())) {
            throw new IllegalArgumentException("cannot prepare " + rows + " activation rows of " + width
                    + " values for " + rounding + " rounding (block of " + rounding.blockSize() + ") in " + order
                    + " order");
        }
        long size = (long) rows * width;
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(rows + " activation rows of " + width + " values exceed one array");
        }
        if (values.length < size) {
            values = new float[(int) size];
            Arena arena = Arena.ofAuto();
            aligned = arena.allocate(size * Float.BYTES, 64);
            sumsArray = new float[(int) (size / SUM_GROUP)];
        }
        if (this.order.rearranges() && pairs.length < size / 2) {
            codes = new int[values.length];
            pairs = new int[values.length / 2];
        }
        // a kernel may load a whole vector of scales from its block's on, up to the last block's
        int scales = values.length / rounding.blockSize() + Simd.L;
        if (this.order.rearranges() && codeScales.length < scales) {
            codeScales = new float[scales];
        }
        // Q8_0's and IQ4_XS's batches of repacked rows multiply the codes as floats (Q8_0Interleaved#tokensHalves)
        floats = withFloatCodes && this.order.readByHalves() && rows > 1;
        if (floats && floatCodes.length < size) {
            floatCodes = new float[values.length];
        }
        bytes = Simd.FUSED && this.order.rearranges() && width > BYTE_PAIRS_FROM;
        if (bytes && bytePairs.length < size) {
            bytePairs = new byte[values.length];
        }
        if (tilesRead(this.order, rows) && tilePairs.length < size / 2) {
            tilePairs = new int[values.length / 2];
            // Q4_K's order: one sum per 32 codes; Q6_K's and Q3_K's: one packed pair per 16 (PairTile#packCodes)
            tileSums = new int[values.length / 16];
            groupSums = new int[values.length / 16];
        }
        this.rows = rows;
        this.width = width;
    }

    /** Rounds {@code x[xOffset .. xOffset + width)} into row {@code row} and sums its groups of 16. */
    public void prepareRow(float[] x, int xOffset, int row) {
        Objects.checkIndex(row, rows);
        Objects.checkFromIndexSize(xOffset, width, x.length);
        int o = row * width;
        if (order.rearranges()) {
            rounding.roundToCodes(x, xOffset, values, o, width, codes, o, codeScales, o / rounding.blockSize());
            if (Simd.FUSED || order.readByHalves()) {
                // the row kernels' pairs: with 256-bit vectors only the tiles' pairs and the natural shorts are read
                order.pack(codes, o, pairs, o / 2, width);
            }
            if (floats) {
                for (int i = o; i < o + width; i++) {
                    floatCodes[i] = codes[i];
                }
            }
            if (bytes) {
                // each 16-bit half of a pair holds a value in [-128, 127] (the upper one less one where the lower is
                // negative): as two signed bytes, widened to 16 bits each, they are the pair again
                for (int i = o / 2, end = (o + width) / 2; i < end; i++) {
                    bytePairs[2 * i] = (byte) pairs[i];
                    bytePairs[2 * i + 1] = (byte) (pairs[i] >> 16);
                }
            }
            if (tilesRead(order, rows)) {
                PairTile.packCodes(order, codes, o, tilePairs, tileSums, groupSums, width);
                if (steppedType != null) {
                    InterleavedRows.steps(steppedType, tilePairs, o / 2, width / 2, stepPairs);
                }
            }
        } else {
            rounding.round(x, xOffset, values, o, width);
        }
        MemorySegment.copy(values, o, aligned, ValueLayout.JAVA_FLOAT, (long) o * Float.BYTES, width);
        for (int g = o / SUM_GROUP, end = (o + width) / SUM_GROUP; g < end; g++) {
            if (Simd.FUSED) {
                // one vector per group, folded pairwise with constant shuffles (16 scalar adds in a row cost more)
                sumsArray[g] = Simd.sum(FloatVector.fromArray(Simd.F, values, g * SUM_GROUP));
                continue;
            }
            float s = 0;
            for (int i = g * SUM_GROUP, e = i + SUM_GROUP; i < e; i++) {
                s += values[i];
            }
            sumsArray[g] = s;
        }
    }

    /**
     * Whether products with {@code rows} rows prepared in {@code order} read {@link #tilePairs()}: batches through
     * {@link PairTile}, and a single row through the one-token kernels of repacked rows ({@link InterleavedRows#reads};
     * Q6_K's order filled also where Q6_K rows are not repacked: a pack per token, small beside the product); the other
     * one-token kernels do not.
     */
    private static boolean tilesRead(LaneOrder order, int rows) {
        return PairTile.pairsCodes(order) && (rows > 1 || InterleavedRows.reads(order));
    }

    public ActivationRounding rounding() { return rounding; }

    /** The order of {@link #codePairs()}; {@link LaneOrder#NATURAL} when there is no such copy. */
    public LaneOrder laneOrder() { return order; }

    public int rows() { return rows; }

    public int width() { return width; }

    /** Row {@code r} is {@code values()[r*width .. (r+1)*width)}. */
    public float[] values() { return values; }

    /**
     * Row {@code r}'s codes paired as {@link PairTile} multiplies them, at {@code r*width/2}, when it takes
     * {@link #laneOrder()} and more than one row was reserved, or Q4_K's or Q6_K's order (whose interleaved one-token
     * kernels read them too).
     */
    int[] tilePairs() { return tilePairs; }

    /**
     * Alongside {@link #tilePairs()}: in Q4_K's order, row {@code r}'s sums of each 32 codes at {@code r*width/32}; in
     * Q6_K's (and Q3_K's), per 16 codes at {@code r*width/16}, {@code -32} times the sums of the first and the second
     * eight, in the lower and upper 16 bits ({@link Q6_KInterleaved}).
     */
    int[] tileSums() { return tileSums; }

    /** Alongside {@link #tilePairs()} in Q6_K's and Q3_K's orders: row {@code r}'s code sum of each 16 at {@code r*width/16}. */
    int[] groupSums() { return groupSums; }

    /**
     * Row {@code r}'s {@link #tilePairs()} telescoped for the one-token kernel of {@link #steppedType()}'s repacked rows,
     * from {@code InterleavedRows.stepCount(type, r*width)}: {@link Q4_KInterleaved#steps}, {@link Q5_KInterleaved256#steps},
     * {@link Q6_KInterleaved256#steps}, {@link Q3_KInterleaved#steps}.
     */
    int[] stepPairs() { return stepPairs; }

    /**
     * The type whose one-token kernel of 256-bit vectors reads {@link #stepPairs()}, when these rows were reserved for
     * one ({@link #reserve(QuantFormat, int, int)}); otherwise null.
     */
    GgmlType steppedType() { return steppedType; }

    /** Row {@code r}'s codes in natural order at {@code r*width}, when the order rearranges. */
    int[] codes() { return codes; }

    /**
     * {@link #codes()} as floats, in the orders of 256-bit row kernels ({@link LaneOrder#readByHalves()}: Q8_0's,
     * IQ4_XS's) when more than one row was reserved for repacked rows.
     */
    float[] floatCodes() {
        if (!floats) {
            throw new IllegalStateException("activation rows of " + width + " values were reserved without their codes as "
                    + "floats (" + rows + " row(s), for rows not repacked or a single token): a batch of repacked rows "
                    + "needs them");
        }
        return floatCodes;
    }

    /** Row {@code r}'s codes in {@link #laneOrder()}'s pairs at {@code r*width/2}, when that order rearranges. */
    int[] codePairs() { return pairs; }

    /**
     * Rows longer than this many values in an order that rearranges (the integer row kernels') also get
     * {@link #bytePairs()}: a byte a value, so that a row's activations stay in L1 beside the weights streaming through
     * it. Shorter rows keep the 4-byte pairs: read as bytes they cost Q4_K 2-6% (one widening instruction per vector of
     * pairs).
     */
    static final int BYTE_PAIRS_FROM = 6144;

    /**
     * {@link #codePairs()} a byte a value, pair {@code i} at bytes {@code 2i} (its lower half) and {@code 2i + 1} (its
     * upper half, which for a summed pair is the upper code less the lower code's sign bit): sign-extended to 16 bits
     * and read as an int, the two bytes are pair {@code i} (codes are -127..127, so each half fits a byte). Filled for
     * rows of more than {@link #BYTE_PAIRS_FROM} values in those orders.
     */
    byte[] bytePairs() { return bytePairs; }

    /**
     * Row {@code r}'s rounding block {@code b} scale at {@code r*width/blockSize + b} ({@link ActivationRounding#blockSize()}),
     * when the order rearranges: value = scale * code.
     */
    float[] codeScales() { return codeScales; }

    /** {@link #values()} in native byte order, 64-byte aligned. */
    MemorySegment alignedValues() { return aligned; }

    /**
     * Row {@code r}'s group {@code g} sum at {@code r*width/16 + g}: the decoding kernels fold block minimums and quant
     * offsets with one multiply-add per block against these.
     */
    float[] sumsArray() { return sumsArray; }
}
