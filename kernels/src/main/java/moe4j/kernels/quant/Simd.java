package moe4j.kernels.quant;

import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector species and constants shared by the fused dot kernels.
 *
 * <p>Kernel rules learned the hard way (C2 in JDK 25): quant bytes are widened straight to int lanes
 * (x86 has no byte shifts, int lanes shift and mask in one instruction); shift counts are vectors (the
 * scalar-count path is too large to inline); and kernels call the Vector API directly rather than
 * through small helpers, because once a method's graph is large C2 stops inlining everything except the
 * API's force-inlined methods, and a vector passed to or returned from a call it did not inline is boxed
 * on the heap, which costs about 10x. 256-element block kernels therefore handle one block per call
 * and keep their accumulators in an array between blocks.
 *
 * <p>A vector that comes out of a loop (a sum carried across its iterations) is converted with
 * {@code convertShape(I2F, species, 0)}, never {@code convert(I2F, 0)}: {@code convert} looks up its result species
 * through {@code AbstractSpecies.findSpecies}, whose slow path C2 keeps once that method has trapped anywhere in the
 * run, and from a loop's vector the lookup is then not a constant, so the conversion is left to the Java fallback and
 * the loop's vectors are boxed. The JVM options {@code -XX:PerMethodTrapLimit} and
 * {@code -XX:PerMethodRecompilationCutoff} (the launcher raises both) guard the big kernels against the same end by
 * another road: the README's "JVM options".
 */
final class Simd {

    private Simd() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    /** Bytes with one lane per float lane (a quarter of the float vector's width). */
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, L * 8)));
    /** A whole 512-bit register of bytes: one load from a memory segment for four 16-lane parts. */
    static final VectorSpecies<Byte> B64 = ByteVector.SPECIES_512;
    /** Shorts with one lane per float lane (half the float vector's width). */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(Math.max(64, L * 16)));

    /**
     * The fused kernels are written for 16 float lanes (AVX-512): a 16-element group is one vector and a
     * 32-element sub-block two. Other widths take the decode-then-dot path, which sums in the same order.
     */
    static final boolean FUSED = L == 16 && B.length() == L && S.length() == L;

    /**
     * Whether the vectors are 256 bits (AVX2): the matrices repacked in groups of 16 rows ({@link InterleavedRows}) then
     * run their integer kernels in halves of 8 rows, the same layout and the same bits as with 512-bit vectors.
     */
    static final boolean HALVES = L == 8;

    /**
     * The species of the kernels written for 256-bit vectors (the repacked rows' halves of 8 rows, Q8_0's row kernel):
     * fixed at 256 bits, as they run only where {@link #HALVES} holds.
     */
    static final VectorSpecies<Short> HALF_S = ShortVector.SPECIES_256;
    static final VectorSpecies<Integer> HALF_I = IntVector.SPECIES_256;
    static final VectorSpecies<Float> HALF_F = FloatVector.SPECIES_256;
    /** Bytes with one lane per lane of {@link #HALF_I}. */
    static final VectorSpecies<Byte> HALF_B = ByteVector.SPECIES_64;
    /** Bytes with one lane per lane of {@link #HALF_S}: 16 quants widened to 16-bit lanes, or looked up by {@code vpshufb}. */
    static final VectorSpecies<Byte> HALF_SB = ByteVector.SPECIES_128;

    /**
     * Whether a byte vector of {@link #B} has one lane per float lane and a 32-byte run is whole vectors of it (8 or 16
     * lanes: AVX2 or AVX-512): what the vectorized dequantizers need, which run at any such width.
     */
    static final boolean BYTE_LANES = B.length() == L && 32 % L == 0;

    /** GGUF data is little-endian. */
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** Shorts filling the float vector's whole width: a 16-bit shift moves a lane's bytes 1 and 3 to 0 and 2. */
    static final VectorSpecies<Short> S_FULL = VectorSpecies.of(short.class, F.vectorShape());
    static final ShortVector SHORT_SHIFT_8 = FUSED ? ShortVector.broadcast(S_FULL, (short) 8) : null;

    /**
     * Weights per inner loop of the quantized types' row kernels ({@code dotRows}; F16 and BF16 take
     * {@link #HALF_FLOAT_SPAN}, F32 whole rows): a longer row is cut into loops of this many (1.1 to
     * 1.7 KB of weights for the 4- to 6-bit types; Q8_0 takes half), which read memory at the same rate wherever the
     * rows start. With rows of 4096 in one loop, Q4_K, Q5_K and Q8_0 streamed at half rate or at full rate depending on
     * where the rows started modulo 256 bytes, and Q6_K, IQ4_XS and Q4_0 at half rate; the same compiled code ran alike
     * at every offset out of L3, so it is how prefetching from DRAM meets a loop that long (bench/CPU-NOTES.md,
     * "Where rows start", has the figures). Q3_K and Q2_K, bound by their arithmetic, read alike at every offset and
     * run whole rows.
     */
    static final int ROW_SPAN = 2048;

    /**
     * Weights per inner loop of the F16 and BF16 row kernels (48 groups of 16, 1.5 KB). On two threads, F16 rows of
     * 2048 in one loop streamed at about 30 GB/s where they started at 0 to 32 modulo 256 bytes and at 52-55 at 96 to
     * 224; loops of 1024 values still ran at 21-23 at offset 0; loops of 768 at 47-55 at every offset, loops of 512
     * up to 10% slower (bench/CPU-NOTES.md, "Where rows start", has the figures). Why the loop's length matters is
     * not known (no counters on that machine). F32, a load and a multiply-add per group, keeps whole rows: cut into
     * loops of 512 values it lost 12-21% at every offset. The cut costs F16 and BF16 8-19% in cache.
     */
    static final int HALF_FLOAT_SPAN = 768;

    /**
     * {@code bits} as C2 cannot see it, for shifts of 16-bit lanes: given a constant count, C2 moves the count into a
     * vector register anew before every such shift ({@code mov}, {@code vmovd}, as the x86 backend has no immediate
     * form for them); given this loop invariant it keeps the count in one register where it has one to spare (in
     * Q3_K's kernel, short of registers, it moves it in from a general register before each shift: bench/CPU-NOTES.md).
     */
    static int opaque(int bits) {
        return OPAQUE[bits];
    }

    private static final int[] OPAQUE = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

    static final IntVector SHIFT_2 = IntVector.broadcast(I, 2);
    static final IntVector SHIFT_4 = IntVector.broadcast(I, 4);
    static final IntVector SHIFT_6 = IntVector.broadcast(I, 6);

    /**
     * The steps of {@link #sum} as constants, for kernels that fold inline: {@code v = v.add(v.rearrange(FOLD_8))},
     * then 4, 2, 1, and lane 0 holds the sum in {@code sum}'s order. A call to {@code sum} from a kernel too large for
     * C2 to inline it into boxes the vector; this form only uses force-inlined Vector API methods (measured: 7-9%
     * faster matrix-vector products than storing the vector and summing its lanes in a helper).
     */
    static final VectorShuffle<Float> FOLD_8 = VectorShuffle.fromOp(F, lane -> (lane + 8) % L);
    static final VectorShuffle<Float> FOLD_4 = VectorShuffle.fromOp(F, lane -> (lane + 4) % L);
    static final VectorShuffle<Float> FOLD_2 = VectorShuffle.fromOp(F, lane -> (lane + 2) % L);
    static final VectorShuffle<Float> FOLD_1 = VectorShuffle.fromOp(F, lane -> (lane + 1) % L);

    /** Shuffles that fold the upper half of the active lanes onto the lower half, widest first. */
    private static final VectorShuffle<Float>[] FOLDS = folds();

    @SuppressWarnings("unchecked")
    private static VectorShuffle<Float>[] folds() {
        VectorShuffle<Float>[] folds = new VectorShuffle[Integer.numberOfTrailingZeros(L)];
        for (int s = 0, half = L / 2; half >= 1; s++, half /= 2) {
            int h = half;
            folds[s] = VectorShuffle.fromOp(F, lane -> (lane + h) % L);
        }
        return folds;
    }

    /**
     * The sum of all lanes in a fixed pairwise order. {@code reduceLanes(ADD)} leaves the order open
     * and its interpreted and compiled forms differ, which would make results depend on JIT warm-up.
     *
     * <p>This and the two halves of the 16-lane fold are each under 35 bytes of bytecode ({@code MaxInlineSize}), so
     * C2 inlines them at call sites it deems warm. Where it deems the site cold it leaves even these a call, and the
     * vector argument is boxed: a row kernel's one call a row, for rows of 2048 floats ("low call site frequency"),
     * so the float row kernels (F32, F16, BF16) fold their sums written out.
     */
    static float sum(FloatVector v) {
        return L == 16 ? sum16(v) : L == 8 ? sum8(v) : sumAnyWidth(v);
    }

    /** {@link #sumAnyWidth}'s folds at 8 lanes as constants (in a loop from the array C2 did not intrinsify them). */
    private static float sum8(FloatVector v) {
        return lastTwoFolds(v.add(v.rearrange(FOLD_4)));
    }

    // constant shuffles: read from the array in a loop, C2 does not intrinsify them (measured: 270 ns a sum, 1.3% of a
    // decoding step in the F32 router's rows)
    private static float sum16(FloatVector v) {
        v = v.add(v.rearrange(FOLD_8));
        v = v.add(v.rearrange(FOLD_4));
        return lastTwoFolds(v);
    }

    private static float lastTwoFolds(FloatVector v) {
        v = v.add(v.rearrange(FOLD_2));
        return v.add(v.rearrange(FOLD_1)).lane(0);
    }

    private static float sumAnyWidth(FloatVector v) {
        for (VectorShuffle<Float> fold : FOLDS) {
            v = v.add(v.rearrange(fold));
        }
        return v.lane(0);
    }

    /** fp16 value of the low (0) or high (1) half of a little-endian int holding two fp16 fields. */
    static float fp16(int pair, int half) {
        return Float.float16ToFloat((short) (pair >>> (16 * half)));
    }
}
