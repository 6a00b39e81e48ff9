package moe4j.kernels;

/**
 * Rotary position embedding parameters, evaluated exactly as ggml's CPU rope (including YaRN).
 *
 * @param dims        rotated dimensions per head (even)
 * @param style       how dimensions are paired
 * @param base        frequency base (theta)
 * @param freqScale   1 / context scaling factor (1 = no scaling)
 * @param extFactor   YaRN extrapolation mix (0 = plain/linear RoPE, 1 = YaRN)
 * @param attnFactor  magnitude multiplier applied to cos and sin
 * @param betaFast    YaRN ramp parameter
 * @param betaSlow    YaRN ramp parameter
 * @param origContext training context the YaRN ramp is computed for
 */
public record Rope(int dims, Style style, float base, float freqScale, float extFactor, float attnFactor,
                   float betaFast, float betaSlow, int origContext) {

    /** Dimension pairing. */
    public enum Style {
        /** Element j rotates with element j + dims/2 (GPT-NeoX, Qwen). */
        NEOX,
        /** Element 2j rotates with element 2j+1 (original LLaMA). */
        NORMAL
    }

    public Rope {
        if (dims <= 0 || dims % 2 != 0) {
            throw new IllegalArgumentException("RoPE dimension count must be positive and even, got " + dims);
        }
        if (!(base > 0) || !(freqScale > 0)) {
            throw new IllegalArgumentException("RoPE base and frequency scale must be positive, got base " + base
                    + ", freq_scale " + freqScale);
        }
    }

    /** Unscaled RoPE. */
    public static Rope plain(int dims, Style style, float base) {
        return new Rope(dims, style, base, 1f, 0f, 1f, 32f, 1f, 0);
    }

    /**
     * The constants the angle formula derives from the parameters, for backends that evaluate
     * {@link #angles} elsewhere (on a GPU).
     *
     * @param thetaScale the factor between consecutive pairs' base angles, {@code base^(-2/dims)}
     * @param rampLow    first dimension pair of the YaRN ramp (0 without YaRN)
     * @param rampHigh   last dimension pair of the YaRN ramp (0 without YaRN)
     * @param magnitude  multiplier of cos and sin
     */
    public record AngleConstants(float thetaScale, float rampLow, float rampHigh, float magnitude) {}

    public AngleConstants angleConstants() {
        float thetaScale = (float) Math.pow(base, -2.0f / dims);
        if (extFactor == 0) {
            return new AngleConstants(thetaScale, 0f, 0f, attnFactor);
        }
        float low = Math.max(0f, (float) Math.floor(correctionDim(betaFast)));
        float high = Math.min(dims - 1f, (float) Math.ceil(correctionDim(betaSlow)));
        float mscale = attnFactor * (1.0f + 0.1f * (float) Math.log(1.0f / freqScale));
        return new AngleConstants(thetaScale, low, high, mscale);
    }

    /**
     * Writes {@code cos} and {@code sin} of the rotation angle of each of the {@code dims/2} pairs at
     * {@code position}, magnitude included. Mirrors ggml: the base angle starts at the position and is
     * multiplied by {@code base^(-2/dims)} once per pair, all in f32.
     */
    public void angles(int position, float[] cos, float[] sin) {
        AngleConstants c = angleConstants();
        float low = c.rampLow();
        float high = c.rampHigh();
        float mscale = c.magnitude();
        float thetaExtrap = position;
        for (int j = 0; j < dims / 2; j++) {
            float thetaInterp = freqScale * thetaExtrap;
            float theta = thetaInterp;
            if (extFactor != 0) {
                float y = (j - low) / Math.max(0.001f, high - low);
                float rampMix = (1 - Math.min(1f, Math.max(0f, y))) * extFactor;
                theta = thetaInterp * (1 - rampMix) + thetaExtrap * rampMix;
            }
            cos[j] = (float) Math.cos(theta) * mscale;
            sin[j] = (float) Math.sin(theta) * mscale;
            thetaExtrap *= c.thetaScale();
        }
    }

    private float correctionDim(float beta) {
        return dims * (float) Math.log(origContext / (beta * 2 * (float) Math.PI)) / (2 * (float) Math.log(base));
    }

    /** Rotates one head of {@code dims} values at {@code x[offset..]} in place with precomputed angles. */
    public void rotate(float[] x, int offset, float[] cos, float[] sin) {
        int half = dims / 2;
        for (int j = 0; j < half; j++) {
            int i0 = style == Style.NEOX ? offset + j : offset + 2 * j;
            int i1 = style == Style.NEOX ? i0 + half : i0 + 1;
            float x0 = x[i0];
            float x1 = x[i1];
            x[i0] = x0 * cos[j] - x1 * sin[j];
            x[i1] = x0 * sin[j] + x1 * cos[j];
        }
    }
}
