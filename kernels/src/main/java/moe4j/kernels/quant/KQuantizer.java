package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

/**
 * The part ggml's Q4_K and Q5_K reference quantizers share: per 32-element sub-block an asymmetric
 * (scale, min) search weighted by {@code rms + |x|}, 6-bit quantization of those against the fp16
 * super-scales, then re-quantization of the elements with the stored scales. Holds per-row scratch
 * so blocks allocate nothing; not thread-safe.
 */
final class KQuantizer {

    private static final int QK = 256;
    private static final int SUB = 32;

    private final int nmax;
    private final float rmin;
    private final float rdelta;
    private final int nstep;

    private final int[] levels = new int[QK];
    private final int[] aux = new int[SUB];
    private final float[] weights = new float[SUB];
    private final float[] scales = new float[QK / SUB];
    private final float[] mins = new float[QK / SUB];
    private final int[] scaleCodes = new int[QK / SUB];
    private final int[] minCodes = new int[QK / SUB];

    KQuantizer(int nmax, float rmin, float rdelta, int nstep) {
        this.nmax = nmax;
        this.rmin = rmin;
        this.rdelta = rdelta;
        this.nstep = nstep;
    }

    /**
     * Writes d, dmin and the packed scales of one super-block and returns its 256 levels (0..nmax),
     * valid until the next call.
     */
    int[] quantizeSuperBlock(float[] x, int xOffset, MemorySegment dst, long dOffset, long dminOffset,
                             long scalesOffset) {
        float maxScale = 0;
        float maxMin = 0;
        for (int j = 0; j < QK / SUB; ++j) {
            int sub = xOffset + SUB * j;
            float sumX2 = 0;
            for (int l = 0; l < SUB; ++l) sumX2 += x[sub + l] * x[sub + l];
            float avX = (float) Math.sqrt(sumX2 / 32);
            for (int l = 0; l < SUB; ++l) weights[l] = avX + Math.abs(x[sub + l]);
            scales[j] = QuantMath.makeQkx2Quants(SUB, nmax, x, sub, weights, levels, SUB * j, mins, j, aux,
                    rmin, rdelta, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
        float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
        for (int j = 0; j < QK / SUB; ++j) {
            // ggml stores nearest_int's result in a uint8_t before capping it at 63
            scaleCodes[j] = Math.min(63, QuantMath.nearestInt(invScale * scales[j]) & 0xFF);
            minCodes[j] = Math.min(63, QuantMath.nearestInt(invMin * mins[j]) & 0xFF);
        }
        KQuantScales.packScaleMin(scaleCodes, minCodes, dst, scalesOffset);
        float d = Halfs.writeFp16(dst, dOffset, maxScale / 63.f);
        float dmin = Halfs.writeFp16(dst, dminOffset, maxMin / 63.f);

        for (int j = 0; j < QK / SUB; ++j) {
            float dl = d * scaleCodes[j];
            if (dl == 0) {
                continue;
            }
            float dm = dmin * minCodes[j];
            for (int i = 0; i < SUB; ++i) {
                int l = QuantMath.nearestInt((x[xOffset + SUB * j + i] + dm) / dl);
                levels[SUB * j + i] = Math.max(0, Math.min(nmax, l));
            }
        }
        return levels;
    }
}
