package moe4j.kernels.quant;

import static moe4j.kernels.quant.Simd.F;
import static moe4j.kernels.quant.Simd.L;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import jdk.incubator.vector.FloatVector;

/**
 * Dot products of 256-element super-block rows (K-quants, IQ4_XS) with {@link PreparedActivations}, decoding
 * each chunk of the row once for all tokens. A block decodes to integer-valued floats {@code q*sc} (quant
 * times its sub-block's integer scale: exact), one float super-scale {@code d}, and sixteen float minimum
 * terms {@code M} (one per 16 elements); its contribution is {@code d * sum(q*sc * x) - sum(M * s)} where
 * {@code s} are the prepared 16-element sums of the activations. Minimums and constant quant offsets
 * (Q3_K's 4, Q6_K's 32) thus cost one multiply-add per block instead of one per element, as in llama.cpp's
 * kernels.
 *
 * <p>Summation order, fixed so that every token's result is the same whatever the batch: per block, element
 * group {@code g} (16 elements) is multiply-added into accumulator {@code g % 4} (starting from zero), the four
 * are added as {@code (c0+c1)+(c2+c3)} and multiply-added with {@code d} into the row accumulator; the minimum
 * terms go to a second accumulator; the result is {@code sum(acc) - sum(accMin)} ({@link Simd#sum}). Types
 * with {@link BlockFormat#fusesScaled()} compute exactly this for single tokens without the decode buffer.
 *
 * <p>Decoded weights and activations are read from 64-byte-aligned native memory (see
 * {@link PreparedActivations}).
 */
final class ScaledDot {

    private ScaledDot() {}

    static final int QK = 256;
    static final boolean NO2 = Boolean.getBoolean("no2");
    /** Super-blocks decoded at a time: 24 KB of floats, within L1 with the activations. */
    private static final int CHUNK_BLOCKS = 24;
    private static final int GROUPS = QK / PreparedActivations.SUM_GROUP;
    static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long BLOCK_BYTES = QK * Float.BYTES;
    private static final long GROUP_BYTES = (long) L * Float.BYTES;

    /** Per-thread decode buffers, and the accumulators of tokens between chunks. */
    static final class Scratch {
        /** Decoded {@code q*sc} of block slot {@code i} at float {@code 256*i}. */
        final MemorySegment w;
        final float[] d = new float[CHUNK_BLOCKS];
        /** Minimum terms of block slot {@code i} at float {@code 16*i}. */
        final MemorySegment mins;
        /** Integer scale codes of the block being decoded. */
        final int[] codes = new int[2 * L];
        float[] state = new float[16 * 2 * L];

        Scratch() {
            Arena arena = Arena.ofAuto();
            w = arena.allocate(CHUNK_BLOCKS * BLOCK_BYTES, 64);
            mins = arena.allocate(CHUNK_BLOCKS * GROUPS * Float.BYTES, 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Arguments already checked; the row has {@code x.width()} elements. */
    static void dot(BlockFormat format, MemorySegment src, long srcOffset, PreparedActivations x, int firstRow,
            int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        int blockBytes = format.blockBytes();
        if (s.state.length < nTokens * 2 * L) {
            s.state = new float[nTokens * 2 * L];
        }
        float[] state = s.state;
        Arrays.fill(state, 0, nTokens * 2 * L, 0f);
        MemorySegment xv = x.alignedValues();
        MemorySegment sums = x.sums();
        long rowBytes = (long) width * Float.BYTES;
        long rowSums = rowBytes / PreparedActivations.SUM_GROUP;
        if (nTokens == 1 && format.fusesScaled()) {
            long xo = firstRow * rowBytes;
            long so = firstRow * rowSums;
            for (int b = 0; b < blocks; b++) {
                format.accumulateScaled(src, srcOffset + (long) b * blockBytes, xv, xo + b * BLOCK_BYTES, sums,
                        so + b * GROUP_BYTES, state, s);
            }
            out[outOffset] = Simd.sum(FloatVector.fromArray(F, state, 0)) - Simd.sum(FloatVector.fromArray(F, state, L));
            return;
        }
        for (int b0 = 0; b0 < blocks; b0 += CHUNK_BLOCKS) {
            int n = Math.min(CHUNK_BLOCKS, blocks - b0);
            for (int b = 0; b < n; b++) {
                format.decodeScaled(src, srcOffset + (long) (b0 + b) * blockBytes, s, b);
            }
            int t = 0;
            for (; t + 2 <= nTokens && !NO2; t += 2) {
                long row = firstRow + t;
                accumulate2(s, n, xv, row * rowBytes + b0 * BLOCK_BYTES, rowBytes, sums,
                        row * rowSums + b0 * GROUP_BYTES, rowSums, state, 2 * L * t);
            }
            for (; t < nTokens; t++) {
                long row = firstRow + t;
                accumulate(s, n, xv, row * rowBytes + b0 * BLOCK_BYTES, sums, row * rowSums + b0 * GROUP_BYTES,
                        state, 2 * L * t);
            }
        }
        for (int t = 0; t < nTokens; t++) {
            out[outOffset + t * outStride] = Simd.sum(FloatVector.fromArray(F, state, 2 * L * t))
                    - Simd.sum(FloatVector.fromArray(F, state, 2 * L * t + L));
        }
    }

    /** One token over {@code blocks} decoded blocks; {@code xo}, {@code so}: byte offsets of its values and sums. */
    private static void accumulate(Scratch s, int blocks, MemorySegment x, long xo, MemorySegment sums, long so,
            float[] state, int st) {
        MemorySegment w = s.w.asSlice(0, blocks * BLOCK_BYTES);
        MemorySegment xs = x.asSlice(xo, blocks * BLOCK_BYTES);
        MemorySegment ss = sums.asSlice(so, blocks * GROUP_BYTES);
        MemorySegment ms = s.mins;
        float[] d = s.d;
        FloatVector zero = FloatVector.zero(F);
        FloatVector acc = FloatVector.fromArray(F, state, st);
        FloatVector accMin = FloatVector.fromArray(F, state, st + L);
        for (long o = 0; o < blocks * BLOCK_BYTES; o += BLOCK_BYTES) {
            FloatVector c0 = FloatVector.fromMemorySegment(F, w, o, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o, NATIVE), zero);
            FloatVector c1 = FloatVector.fromMemorySegment(F, w, o + 64, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 64, NATIVE), zero);
            FloatVector c2 = FloatVector.fromMemorySegment(F, w, o + 128, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 128, NATIVE), zero);
            FloatVector c3 = FloatVector.fromMemorySegment(F, w, o + 192, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 192, NATIVE), zero);
            c0 = FloatVector.fromMemorySegment(F, w, o + 256, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 256, NATIVE), c0);
            c1 = FloatVector.fromMemorySegment(F, w, o + 320, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 320, NATIVE), c1);
            c2 = FloatVector.fromMemorySegment(F, w, o + 384, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 384, NATIVE), c2);
            c3 = FloatVector.fromMemorySegment(F, w, o + 448, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 448, NATIVE), c3);
            c0 = FloatVector.fromMemorySegment(F, w, o + 512, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 512, NATIVE), c0);
            c1 = FloatVector.fromMemorySegment(F, w, o + 576, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 576, NATIVE), c1);
            c2 = FloatVector.fromMemorySegment(F, w, o + 640, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 640, NATIVE), c2);
            c3 = FloatVector.fromMemorySegment(F, w, o + 704, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 704, NATIVE), c3);
            c0 = FloatVector.fromMemorySegment(F, w, o + 768, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 768, NATIVE), c0);
            c1 = FloatVector.fromMemorySegment(F, w, o + 832, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 832, NATIVE), c1);
            c2 = FloatVector.fromMemorySegment(F, w, o + 896, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 896, NATIVE), c2);
            c3 = FloatVector.fromMemorySegment(F, w, o + 960, NATIVE).fma(FloatVector.fromMemorySegment(F, xs, o + 960, NATIVE), c3);
            long mo = o >>> 4;
            acc = c0.add(c1).add(c2.add(c3)).fma(FloatVector.broadcast(F, d[(int) (o >>> 10)]), acc);
            accMin = FloatVector.fromMemorySegment(F, ms, mo, NATIVE).fma(FloatVector.fromMemorySegment(F, ss, mo, NATIVE), accMin);
        }
        acc.intoArray(state, st);
        accMin.intoArray(state, st + L);
    }

    /**
     * {@link #accumulate} for two consecutive tokens (rows {@code xStride} and {@code sStride} bytes apart)
     * sharing each weight load; each token sees the same operations in the same order as alone.
     */
    private static void accumulate2(Scratch s, int blocks, MemorySegment x, long xo, long xStride, MemorySegment sums,
            long so, long sStride, float[] state, int st) {
        long bytes = blocks * BLOCK_BYTES;
        MemorySegment w = s.w.asSlice(0, bytes);
        MemorySegment xs = x.asSlice(xo, bytes);
        MemorySegment ys = x.asSlice(xo + xStride, bytes);
        MemorySegment ss = sums.asSlice(so, blocks * GROUP_BYTES);
        MemorySegment ts = sums.asSlice(so + sStride, blocks * GROUP_BYTES);
        MemorySegment ms = s.mins;
        float[] d = s.d;
        FloatVector zero = FloatVector.zero(F);
        FloatVector acc = FloatVector.fromArray(F, state, st);
        FloatVector accMin = FloatVector.fromArray(F, state, st + L);
        FloatVector accB = FloatVector.fromArray(F, state, st + 2 * L);
        FloatVector accMinB = FloatVector.fromArray(F, state, st + 3 * L);
        for (long o = 0; o < bytes; o += BLOCK_BYTES) {
            FloatVector w00 = FloatVector.fromMemorySegment(F, w, o + 0, NATIVE);
            FloatVector c0 = w00.fma(FloatVector.fromMemorySegment(F, xs, o + 0, NATIVE), zero);
            FloatVector e0 = w00.fma(FloatVector.fromMemorySegment(F, ys, o + 0, NATIVE), zero);
            FloatVector w01 = FloatVector.fromMemorySegment(F, w, o + 64, NATIVE);
            FloatVector c1 = w01.fma(FloatVector.fromMemorySegment(F, xs, o + 64, NATIVE), zero);
            FloatVector e1 = w01.fma(FloatVector.fromMemorySegment(F, ys, o + 64, NATIVE), zero);
            FloatVector w02 = FloatVector.fromMemorySegment(F, w, o + 128, NATIVE);
            FloatVector c2 = w02.fma(FloatVector.fromMemorySegment(F, xs, o + 128, NATIVE), zero);
            FloatVector e2 = w02.fma(FloatVector.fromMemorySegment(F, ys, o + 128, NATIVE), zero);
            FloatVector w03 = FloatVector.fromMemorySegment(F, w, o + 192, NATIVE);
            FloatVector c3 = w03.fma(FloatVector.fromMemorySegment(F, xs, o + 192, NATIVE), zero);
            FloatVector e3 = w03.fma(FloatVector.fromMemorySegment(F, ys, o + 192, NATIVE), zero);
            FloatVector w10 = FloatVector.fromMemorySegment(F, w, o + 256, NATIVE);
            c0 = w10.fma(FloatVector.fromMemorySegment(F, xs, o + 256, NATIVE), c0);
            e0 = w10.fma(FloatVector.fromMemorySegment(F, ys, o + 256, NATIVE), e0);
            FloatVector w11 = FloatVector.fromMemorySegment(F, w, o + 320, NATIVE);
            c1 = w11.fma(FloatVector.fromMemorySegment(F, xs, o + 320, NATIVE), c1);
            e1 = w11.fma(FloatVector.fromMemorySegment(F, ys, o + 320, NATIVE), e1);
            FloatVector w12 = FloatVector.fromMemorySegment(F, w, o + 384, NATIVE);
            c2 = w12.fma(FloatVector.fromMemorySegment(F, xs, o + 384, NATIVE), c2);
            e2 = w12.fma(FloatVector.fromMemorySegment(F, ys, o + 384, NATIVE), e2);
            FloatVector w13 = FloatVector.fromMemorySegment(F, w, o + 448, NATIVE);
            c3 = w13.fma(FloatVector.fromMemorySegment(F, xs, o + 448, NATIVE), c3);
            e3 = w13.fma(FloatVector.fromMemorySegment(F, ys, o + 448, NATIVE), e3);
            FloatVector w20 = FloatVector.fromMemorySegment(F, w, o + 512, NATIVE);
            c0 = w20.fma(FloatVector.fromMemorySegment(F, xs, o + 512, NATIVE), c0);
            e0 = w20.fma(FloatVector.fromMemorySegment(F, ys, o + 512, NATIVE), e0);
            FloatVector w21 = FloatVector.fromMemorySegment(F, w, o + 576, NATIVE);
            c1 = w21.fma(FloatVector.fromMemorySegment(F, xs, o + 576, NATIVE), c1);
            e1 = w21.fma(FloatVector.fromMemorySegment(F, ys, o + 576, NATIVE), e1);
            FloatVector w22 = FloatVector.fromMemorySegment(F, w, o + 640, NATIVE);
            c2 = w22.fma(FloatVector.fromMemorySegment(F, xs, o + 640, NATIVE), c2);
            e2 = w22.fma(FloatVector.fromMemorySegment(F, ys, o + 640, NATIVE), e2);
            FloatVector w23 = FloatVector.fromMemorySegment(F, w, o + 704, NATIVE);
            c3 = w23.fma(FloatVector.fromMemorySegment(F, xs, o + 704, NATIVE), c3);
            e3 = w23.fma(FloatVector.fromMemorySegment(F, ys, o + 704, NATIVE), e3);
            FloatVector w30 = FloatVector.fromMemorySegment(F, w, o + 768, NATIVE);
            c0 = w30.fma(FloatVector.fromMemorySegment(F, xs, o + 768, NATIVE), c0);
            e0 = w30.fma(FloatVector.fromMemorySegment(F, ys, o + 768, NATIVE), e0);
            FloatVector w31 = FloatVector.fromMemorySegment(F, w, o + 832, NATIVE);
            c1 = w31.fma(FloatVector.fromMemorySegment(F, xs, o + 832, NATIVE), c1);
            e1 = w31.fma(FloatVector.fromMemorySegment(F, ys, o + 832, NATIVE), e1);
            FloatVector w32 = FloatVector.fromMemorySegment(F, w, o + 896, NATIVE);
            c2 = w32.fma(FloatVector.fromMemorySegment(F, xs, o + 896, NATIVE), c2);
            e2 = w32.fma(FloatVector.fromMemorySegment(F, ys, o + 896, NATIVE), e2);
            FloatVector w33 = FloatVector.fromMemorySegment(F, w, o + 960, NATIVE);
            c3 = w33.fma(FloatVector.fromMemorySegment(F, xs, o + 960, NATIVE), c3);
            e3 = w33.fma(FloatVector.fromMemorySegment(F, ys, o + 960, NATIVE), e3);
            FloatVector db = FloatVector.broadcast(F, d[(int) (o >>> 10)]);
            acc = c0.add(c1).add(c2.add(c3)).fma(db, acc);
            accB = e0.add(e1).add(e2.add(e3)).fma(db, accB);
            long mo = o >>> 4;
            FloatVector m = FloatVector.fromMemorySegment(F, ms, mo, NATIVE);
            accMin = m.fma(FloatVector.fromMemorySegment(F, ss, mo, NATIVE), accMin);
            accMinB = m.fma(FloatVector.fromMemorySegment(F, ts, mo, NATIVE), accMinB);
        }
        acc.intoArray(state, st);
        accMin.intoArray(state, st + L);
        accB.intoArray(state, st + 2 * L);
        accMinB.intoArray(state, st + 3 * L);
    }
}
