package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads one byte of every cache line a fixed distance ahead of a one-token kernel's weights, so that those lines are
 * on their way from memory while the kernel's arithmetic runs on the current ones. Java has no prefetch instruction,
 * and a kernel whose every instruction depends on its loads fills the core's scheduler a few blocks past a load that
 * missed, which then bounds how many lines are in flight; these byte loads depend on nothing, so they issue at once,
 * and the only work waiting on them is one add. The float prompt tiles read their next row tile the same way
 * ({@link #lines}).
 *
 * <p>Measured on a 2-core Intel Xeon VM (AVX-512; a lone thread streams at half the machine's rate): JMH
 * {@code matVecTwoThreads} out of cache, two runs, Q6_K 9.8-10.4 -> 13.0-13.4 GB/s, Q4_K 12.0-12.4 -> 11.2-11.9 (one
 * thread 4.9-5.0 -> 5.2-5.8), in L2 unchanged; generation (tg32) of the 12-layer Qwen3-30B-A3B-shaped files, 4 KiB
 * ahead, three and two alternations: Q4_K_M 14.6 / 15.8 / 15.4 -> 16.7 / 16.1 / 17.6 tok/s (with Q6_K's kernel alone
 * reading ahead 15.1-15.8 against 16.6-17.0 with both), Q3_K_M 17.7 / 16.9 -> 19.5 / 18.8. Q5_K's kernel did not move
 * in JMH, but Q5_K_M's tg32 went 15.3 / 15.4 / 15.7 -> 16.7 / 17.3 / 16.0 with it (2 KiB ahead; llama.cpp 16.2). Only
 * these three read ahead: in the same JMH runs Q3_K lost 15-20% (and Q3_K_M's tg32 19.2-19.3 -> 18.2-18.7 tok/s, its
 * kernel being bound by its arithmetic), IQ4_XS 10% (its 12-layer file's tg32 18.9-19.4 -> 18.2-19.2; llama.cpp 16.3),
 * Q2_K and Q4_0 more, and Q8_0's kernel fell to a tenth. An earlier try that read one line per eight blocks, 4-8 KB
 * ahead, lost 15-25%: the stream was not covered, and each lone miss held up the rest.
 * {@code -Dmoe4j.cpu.readAhead=BYTES} sets the distance, 0 turns it off.
 *
 * <p>{@link #touch} is a call in the kernels' loops on purpose: C2 inlines it there ({@code -XX:+PrintInlining}:
 * "inline (hot)"; its "callee is too large" lines are C1's). With the same reads written into the three loops instead,
 * Q3_K_M's generation fell to a third in some repetitions (tg64 8.3 +- 3.5 against 19.9-20.1; the cause, some
 * compilation of a larger loop, was not pinned down).
 */
final class ReadAhead {

    private ReadAhead() {}

    /**
     * Bytes ahead of the block being multiplied; by default 2 KiB where the vectors are 512 bits and none where they are
     * 256 ({@link Simd#HALVES}). Q4_K_M tg32 on the Intel VM (512-bit kernels), five alternations: 1 to 16 KiB within
     * 10% of each other (16 KiB the slowest), 2 KiB ahead of 4 in each (17.8-18.6 against 17.1-17.8 tok/s). On the
     * Zen 3 VM (AVX2, 256-bit kernels) reading ahead cost the repacked Q4_K and Q6_K kernels 10-15%: Q4_K_M tg64 over
     * five alternations 31.1 / 31.4 / 30.9 / 26.9 / 28.6 tok/s without, 30.1 / 27.8 / 27.3 / 22.3 / 25.7 at 2 KiB
     * (8 and 16 KiB no better), while Q3_K_M and Q5_K_M moved within the noise (bench/CPU-NOTES.md). Which of the
     * two cores, prefetchers or kernels makes the difference was not pinned down; the default follows the kernels.
     */
    static final long DISTANCE = Math.max(0, Long.getLong("moe4j.cpu.readAhead", Simd.HALVES ? 0 : 2048));

    private static final int LINE = 64;

    /**
     * The sum of one byte from each 64-byte step of the {@code bytes} bytes at {@code at + DISTANCE}, or 0 where they
     * would pass the end of {@code src}. Called once per block with the block's size, consecutive blocks' steps are
     * at most a line apart, so every line of the stream is read. Q5_K's and Q6_K's kernels read ahead this way: with
     * {@link #touchClamped} instead they lost out of cache (JMH {@code matVecTwoThreads}, Intel VM, four alternations,
     * GB/s: Q6_K 13.8-14.7 -> 12.3-12.7, Q5_K 9.5-10.7 -> 8.6-9.8), though Q5_K gained 18-23% in L2 and Q6_K was level
     * there; a long counter in {@link #lines} with the clamp did not win Q6_K back.
     */
    static int touch(MemorySegment src, long at, long bytes) {
        return touch(src, at, bytes, DISTANCE);
    }

    /** {@link #touch} at {@code distance} bytes ahead (tests). */
    static int touch(MemorySegment src, long at, long bytes, long distance) {
        long ahead = at + distance;
        return distance == 0 || ahead + bytes > src.byteSize() ? 0 : lines(src, ahead, bytes);
    }

    /**
     * As {@link #touch}, but near the end of {@code src} the last {@code bytes} bytes are read instead of none
     * ({@code lastStart}: {@code src.byteSize() - bytes}, computed once per call of the kernel), and the lines are
     * counted in an int. {@link #touch}'s long counter makes C2 build a loop nest around every block's three or four
     * loads (some 50 scalar instructions a block in Q4_K's compiled loop), and its branch, once the counter is an int,
     * is hoisted out of the block loop as a profiled predicate that fails at every matrix ending its segment, so that
     * the kernel is recompiled over and over (JMH: 0.06 GB/s). Q4_K's kernel reads ahead this way (Intel VM, JMH
     * {@code matVecOneThread -p kib=512}, GB/s, two alternations: 8.3 / 8.1 -> 9.1 / 9.2; {@code matVecTwoThreads} out
     * of cache 10.6 / 10.3 -> 12.1 / 11.6; Q4_K_M tg64, four alternations, 15.4 / 15.1 / 14.4 / 15.8 -> 16.3 / 17.0 /
     * 15.7 / 15.8 tok/s).
     */
    static int touchClamped(MemorySegment src, long at, int bytes, long lastStart) {
        return touchClamped(src, at, bytes, lastStart, DISTANCE);
    }

    /** {@link #touchClamped} at {@code distance} bytes ahead (tests). */
    static int touchClamped(MemorySegment src, long at, int bytes, long lastStart, long distance) {
        if (distance == 0) {
            return 0;
        }
        long ahead = Math.min(at + distance, lastStart);
        int sum = 0;
        for (int o = 0; o < bytes; o += LINE) {
            sum += src.get(ValueLayout.JAVA_BYTE, ahead + o);
        }
        return sum;
    }

    /**
     * One byte {@link #DISTANCE} ahead of {@code at}, or the last one ({@code lastByte}: {@code src.byteSize() - 1})
     * near the end: a single line of the stream, where a kernel that reads one line per several of its own steps
     * wants the hardware prefetcher started in each page before it gets there. With {@code DISTANCE} 0 it reads at
     * {@code at}.
     */
    static int touchLine(MemorySegment src, long at, long lastByte) {
        return touchLine(src, at, lastByte, DISTANCE);
    }

    /** {@link #touchLine} at {@code distance} bytes ahead (tests). */
    static int touchLine(MemorySegment src, long at, long lastByte, long distance) {
        return src.get(ValueLayout.JAVA_BYTE, Math.min(at + distance, lastByte));
    }

    /**
     * The sum of one byte from each 64-byte step of {@code src[offset .. offset+bytes)}: a load per cache line. The
     * float prompt tiles read the next row tile's lines this way before the current tile's products, so that its
     * misses are in flight together while the products run, where the decoder would meet them one block at a time
     * (prompt processing +1-3%, streaming matrix products +6-8%, with 32-row calls).
     */
    static int lines(MemorySegment src, long offset, long bytes) {
        int sum = 0;
        for (long o = 0; o < bytes; o += LINE) {
            sum += src.get(ValueLayout.JAVA_BYTE, offset + o);
        }
        return sum;
    }

    /**
     * Uses {@code sum} so that the compiler keeps the loads that made it, without a store every thread would share: the
     * branch is all but never taken, and when it is its write is harmless.
     */
    static void keep(int sum) {
        if (sum == RARE) {
            rareSums++;
        }
    }

    private static final int RARE = 0x5EED_1D1E;
    /** Never read: writing it is the effect that keeps {@link #keep}'s sum. */
    private static int rareSums;
}
