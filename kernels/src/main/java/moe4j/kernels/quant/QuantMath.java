package moe4j.kernels.quant;

/**
 * Shared pieces of ggml's reference quantizers, mirrored in float32 with ggml's evaluation order so
 * results are bit-identical (Java float arithmetic is IEEE single precision, never fused).
 */
final class QuantMath {

    private QuantMath() {}

    /** ggml treats a group whose largest magnitude is below this as all zero. */
    static final float GROUP_MAX_EPS = 1e-15f;

    /**
     * ggml's {@code nearest_int}: round half to even via the 1.5*2^23 magic constant. Reproduces its
     * bit trick exactly, including its result for out-of-range or NaN input.
     */
    static int nearestInt(float value) {
        int bits = Float.floatToRawIntBits(value + 12582912f);
        return (bits & 0x007FFFFF) - 0x00400000;
    }

    /** C {@code roundf}: round half away from zero (Java's Math.round rounds halves up instead). */
    static float roundHalfAway(float value) {
        double rounded = Math.floor(Math.abs((double) value) + 0.5);
        return (float) Math.copySign(rounded, value);
    }

    /**
     * ggml's {@code make_qkx2_quants}: weighted search for an asymmetric (scale, min) pair with levels
     * 0..nmax. Writes levels to {@code levels[levelOffset..+n)}, {@code -min} to {@code mins[minIndex]},
     * and returns the scale. {@code aux} is scratch of at least {@code n} entries.
     */
    static float makeQkx2Quants(int n, int nmax, float[] x, int xOffset, float[] weights, int[] levels, int levelOffset,
                                float[] mins, int minIndex, int[] aux, float rmin, float rdelta, int nstep,
                                boolean useMad) {
        float min = x[xOffset];
        float max = x[xOffset];
        float sumW = weights[0];
        float sumX = sumW * x[xOffset];
        for (int i = 1; i < n; ++i) {
            float xi = x[xOffset + i];
            if (xi < min) min = xi;
            if (xi > max) max = xi;
            float w = weights[i];
            sumW += w;
            sumX += w * xi;
        }
        if (min > 0) min = 0;
        if (max == min) {
            for (int i = 0; i < n; ++i) levels[levelOffset + i] = 0;
            mins[minIndex] = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearestInt(iscale * (x[xOffset + i] - min));
            l = Math.max(0, Math.min(nmax, l));
            levels[levelOffset + i] = l;
            float diff = scale * l + min - x[xOffset + i];
            diff = useMad ? Math.abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1) {
            mins[minIndex] = -min;
            return scale;
        }
        for (int is = 0; is <= nstep; ++is) {
            iscale = (rmin + rdelta * is + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; ++i) {
                float xi = x[xOffset + i];
                int l = nearestInt(iscale * (xi - min));
                l = Math.max(0, Math.min(nmax, l));
                aux[i] = l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * xi;
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0) {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0) {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i) {
                    float diff = thisScale * aux[i] + thisMin - x[xOffset + i];
                    diff = useMad ? Math.abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError) {
                    System.arraycopy(aux, 0, levels, levelOffset, n);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        mins[minIndex] = -min;
        return scale;
    }

    /**
     * ggml's {@code make_qx_quants} with {@code rmse_type = 1} and no importance weights (weights
     * x²): symmetric levels in {@code [0, 2*nmax)} after a search over 19 trial scales. Returns the scale.
     */
    static float makeQxQuantsRmse1(int n, int nmax, float[] x, int xOffset, int[] levels, int levelOffset) {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i) {
            float ax = Math.abs(x[xOffset + i]);
            if (ax > amax) {
                amax = ax;
                max = x[xOffset + i];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            for (int i = 0; i < n; ++i) levels[levelOffset + i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumLX = 0;
        float sumL2 = 0;
        for (int i = 0; i < n; ++i) {
            float xi = x[xOffset + i];
            int l = nearestInt(iscale * xi);
            l = Math.max(-nmax, Math.min(nmax - 1, l));
            levels[levelOffset + i] = l + nmax;
            float w = xi * xi;
            sumLX += w * xi * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0 ? sumLX / sumL2 : 0.0f;
        float best = scale * sumLX;
        for (int is = -9; is <= 9; ++is) {
            if (is == 0) {
                continue;
            }
            iscale = -(nmax + 0.1f * is) / max;
            sumLX = 0;
            sumL2 = 0;
            for (int i = 0; i < n; ++i) {
                float xi = x[xOffset + i];
                int l = nearestInt(iscale * xi);
                l = Math.max(-nmax, Math.min(nmax - 1, l));
                float w = xi * xi;
                sumLX += w * xi * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
                for (int i = 0; i < n; ++i) {
                    int l = nearestInt(iscale * x[xOffset + i]);
                    levels[levelOffset + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
                }
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    /**
     * ggml's {@code make_q3_quants} with {@code do_rmse}: symmetric levels refined by up to five passes
     * of coordinate descent on the x²-weighted error. Levels land in {@code [0, 2*nmax)}; returns the scale.
     */
    static float makeQ3QuantsRmse(int n, int nmax, float[] x, int xOffset, int[] levels, int levelOffset) {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i) {
            float ax = Math.abs(x[xOffset + i]);
            if (ax > amax) {
                amax = ax;
                max = x[xOffset + i];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            for (int i = 0; i < n; ++i) levels[levelOffset + i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumLX = 0;
        float sumL2 = 0;
        for (int i = 0; i < n; ++i) {
            float xi = x[xOffset + i];
            int l = nearestInt(iscale * xi);
            l = Math.max(-nmax, Math.min(nmax - 1, l));
            levels[levelOffset + i] = l;
            float w = xi * xi;
            sumLX += w * xi * l;
            sumL2 += w * l * l;
        }
        for (int pass = 0; pass < 5; ++pass) {
            int changed = 0;
            for (int i = 0; i < n; ++i) {
                float xi = x[xOffset + i];
                int li = levels[levelOffset + i];
                float w = xi * xi;
                float slx = sumLX - w * xi * li;
                if (slx > 0) {
                    float sl2 = sumL2 - w * li * li;
                    int newL = nearestInt(xi * sl2 / slx);
                    newL = Math.max(-nmax, Math.min(nmax - 1, newL));
                    if (newL != li) {
                        slx += w * xi * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * sumL2 > sumLX * sumLX * sl2) {
                            levels[levelOffset + i] = newL;
                            sumLX = slx;
                            sumL2 = sl2;
                            ++changed;
                        }
                    }
                }
            }
            if (changed == 0) {
                break;
            }
        }
        for (int i = 0; i < n; ++i) {
            levels[levelOffset + i] += nmax;
        }
        return sumL2 > 0.0f ? sumLX / sumL2 : 0.0f;
    }
}
