package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.LSHL;

import jdk.incubator.vector.IntVector;

/**
 * An arrangement of each 256 rounded activations that matches how a decoding kernel unpacks its quants, so that the
 * kernel reads activations straight through, as integers.
 *
 * <p>The kernels that use one load 64 quant bytes as sixteen 32-bit lanes and leave two quants in each lane with a
 * shift and a mask: bytes {@code t} and {@code t + 2} (or a bit field of each), one in each 16-bit half,
 * {@code qLow + 65536 * qHigh}. Each int of an order holds the 8-bit codes of the two activations those quants
 * multiply ({@link ActivationRounding#roundToCodes}), crosswise: {@code aHigh + 65536 * aLow}. One 32-bit multiply
 * then leaves {@code qLow * aLow + qHigh * aHigh} in the upper half of the product, with {@code qLow * aHigh} below it
 * (the {@code 65536^2} term falls off the int): two multiply-adds per lane and instruction, with no conversion to
 * float (the Vector API has no byte dot product such as {@code vpdpbusd}). Sums of such products stay exact as long
 * as the upper halves stay within a signed 16 bits and the lower ones within 15; the kernel adds {@code 2^15} before
 * it shifts the upper half down, so that a negative lower half does not borrow from it. The arrangement is made once
 * per activation row and read by every row of the matrix. Kernels whose quants are signed values too wide to pair
 * (IQ4_XS's levels) multiply in 16-bit lanes instead, one product per lane; their order keeps the two codes of an int
 * side by side ({@link #codeShorts}).
 *
 * <p>Int {@code 16v + i} of a block (vector {@code v} of 8, lane {@code i}) holds the code of element
 * {@code element(v, i, true)} in its upper half and that of {@code element(v, i, false)} in its lower half.
 */
public final class LaneOrder {

    /** Block length the orders apply to (the K-quant super-block; eight Q4_0 blocks). */
    public static final int BLOCK = 256;

    /** Ints per block. */
    static final int PAIRS = BLOCK / 2;

    /** Activations as they are: no copy, no kernel that needs one. */
    public static final LaneOrder NATURAL = new LaneOrder("natural", null, false, false, null, null);

    private static final int LANES = 16;

    private final String name;
    private final ActivationRounding rounding;
    /** Codes side by side as two 16-bit fields ({@link #codeShorts}) rather than summed as one integer. */
    private final boolean shorts;
    /** Whether row kernels of 256-bit vectors read this order ({@link #naturalShorts}). */
    private final boolean readByHalves;
    private final int[] highSource;
    private final int[] lowSource;

    private LaneOrder(String name, ActivationRounding rounding, boolean shorts, boolean readByHalves, int[] highSource,
                      int[] lowSource) {
        this.name = name;
        this.rounding = rounding;
        this.shorts = shorts;
        this.readByHalves = readByHalves;
        this.highSource = highSource;
        this.lowSource = lowSource;
    }

    /** Which element of the block a kernel's vector {@code v} (0..7), lane {@code i} (0..15) takes. */
    @FunctionalInterface
    interface PairElement {
        /** {@code high}: the element whose code goes in the upper 16 bits of the int, else the lower 16 bits. */
        int element(int v, int i, boolean high);
    }

    /**
     * The order whose vector {@code v}, lane {@code i} pairs {@code element(v, i, true)} and {@code element(v, i, false)},
     * of codes rounded by {@code rounding}.
     */
    static LaneOrder codePairs(String name, ActivationRounding rounding, PairElement element) {
        return order(name, rounding, false, false, element);
    }

    /**
     * For kernels that multiply in 16-bit lanes: int {@code 16v + i} holds the codes of {@code element(v, i, false)} and
     * {@code element(v, i, true)} as the two 16-bit fields of short lanes {@code 2i} and {@code 2i + 1} of vector
     * {@code v}, each sign-extended within its field (not summed as {@link #codePairs} sums them).
     */
    static LaneOrder codeShorts(String name, ActivationRounding rounding, PairElement element) {
        return order(name, rounding, true, false, element);
    }

    /**
     * The codes in natural order as {@link #codeShorts}' 16-bit fields (int {@code k} holds elements {@code 2k} and
     * {@code 2k + 1}): what the row kernels of 256-bit vectors that multiply codes (Q8_0's, IQ4_XS's) load, 16 elements
     * a vector; the one kind of order those machines prepare besides the repacked rows' ({@link #readByHalves}).
     */
    static LaneOrder naturalShorts(String name, ActivationRounding rounding) {
        return order(name, rounding, true, true, (v, i, high) -> 2 * (16 * v + i) + (high ? 1 : 0));
    }

    private static LaneOrder order(String name, ActivationRounding rounding, boolean shorts, boolean readByHalves,
                                   PairElement element) {
        int[] high = new int[PAIRS];
        int[] low = new int[PAIRS];
        boolean[] seen = new boolean[BLOCK];
        for (int v = 0; v < PAIRS / LANES; v++) {
            for (int i = 0; i < LANES; i++) {
                for (boolean upper : new boolean[] {true, false}) {
                    int e = element.element(v, i, upper);
                    if (e < 0 || e >= BLOCK || seen[e]) {
                        throw new IllegalArgumentException(name + " is not a permutation: element " + e + " at vector "
                                + v + " lane " + i);
                    }
                    seen[e] = true;
                    (upper ? high : low)[LANES * v + i] = e;
                }
            }
        }
        return new LaneOrder(name, rounding, shorts, readByHalves, high, low);
    }

    /** The rounding whose codes this order pairs; null for {@link #NATURAL}, which pairs none. */
    public ActivationRounding rounding() { return rounding; }

    /** Whether the codes are two 16-bit fields of each int ({@link #codeShorts}) rather than summed in it. */
    boolean packsShorts() { return shorts; }

    /** Whether this is a {@link #naturalShorts} order, which row kernels of 256-bit vectors read. */
    boolean readByHalves() { return readByHalves; }

    /** Whether this order differs from the natural one (and so needs its own copy of the activations). */
    public boolean rearranges() { return highSource != null; }

    /** Packs the codes {@code codes[codesOffset .. + count)} in this order into {@code pairs[pairsOffset .. + count/2)}. */
    void pack(int[] codes, int codesOffset, int[] pairs, int pairsOffset, int count) {
        if (highSource == null || count % BLOCK != 0) {
            throw new IllegalArgumentException(name + " cannot pack " + count + " codes in pairs");
        }
        for (int b = 0; b < count; b += BLOCK) {
            int out = pairsOffset + b / 2;
            if (Simd.FUSED) {
                for (int p = 0; p < PAIRS; p += LANES) {
                    IntVector high = IntVector.fromArray(Simd.I, codes, codesOffset + b, highSource, p).lanewise(LSHL, 16);
                    IntVector low = IntVector.fromArray(Simd.I, codes, codesOffset + b, lowSource, p);
                    (shorts ? low.and(0xFFFF).or(high) : low.add(high)).intoArray(pairs, out + p);
                }
                continue;
            }
            for (int p = 0; p < PAIRS; p++) {
                int low = codes[codesOffset + b + lowSource[p]];
                int high = codes[codesOffset + b + highSource[p]] << 16;
                pairs[out + p] = shorts ? (low & 0xFFFF) | high : low + high;
            }
        }
    }

    @Override
    public String toString() { return name; }
}
