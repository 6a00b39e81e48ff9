package moe4j.engine.sampling;

/**
 * Token sampling parameters, applied in llama.cpp's default order: penalties, top-k, top-p, min-p,
 * temperature, then a seeded random draw. A temperature of 0 or less picks the most likely token.
 *
 * @param temperature      divides the logits; {@code <= 0} means greedy
 * @param topK             keep the k most likely tokens; {@code <= 0} keeps all
 * @param topP             keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all
 * @param minP             drop tokens less likely than {@code minP} times the most likely one; 0 keeps all
 * @param repeatPenalty    divides positive (multiplies negative) logits of recently seen tokens; 1 = off
 * @param presencePenalty  subtracted once from the logit of every recently seen token; 0 = off
 * @param frequencyPenalty subtracted from a recently seen token's logit per occurrence; 0 = off
 * @param penaltyLastN     how many recent tokens the penalties look at; 0 = penalties off
 * @param seed             seed of the random draw: the same seed, settings and logits give the same tokens
 */
public record SamplerSettings(float temperature, int topK, float topP, float minP, float repeatPenalty,
                              float presencePenalty, float frequencyPenalty, int penaltyLastN, long seed) {

    public SamplerSettings {
        if (Float.isNaN(temperature)) {
            throw new IllegalArgumentException("temperature must be a number");
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
        }
        if (!(minP >= 0 && minP <= 1)) {
            throw new IllegalArgumentException("min-p must be in [0, 1], got " + minP);
        }
        if (!(repeatPenalty > 0) || Float.isInfinite(repeatPenalty)) {
            throw new IllegalArgumentException("repeat penalty must be positive and finite, got " + repeatPenalty);
        }
        if (!Float.isFinite(presencePenalty) || !Float.isFinite(frequencyPenalty)) {
            throw new IllegalArgumentException("presence and frequency penalties must be finite");
        }
        if (penaltyLastN < 0) {
            throw new IllegalArgumentException("penalty window must not be negative, got " + penaltyLastN);
        }
    }

    /** Always the most likely token. */
    public static SamplerSettings greedy() {
        return new SamplerSettings(0f, 0, 1f, 0f, 1f, 0f, 0f, 0, 0L);
    }

    /** llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties. */
    public static SamplerSettings defaults(long seed) {
        return new SamplerSettings(0.8f, 40, 0.95f, 0.05f, 1f, 0f, 0f, 64, seed);
    }

    public boolean isGreedy() {
        return temperature <= 0;
    }

    public SamplerSettings withTemperature(float v) {
        return new SamplerSettings(v, topK, topP, minP, repeatPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplerSettings withTopK(int v) {
        return new SamplerSettings(temperature, v, topP, minP, repeatPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplerSettings withTopP(float v) {
        return new SamplerSettings(temperature, topK, v, minP, repeatPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplerSettings withMinP(float v) {
        return new SamplerSettings(temperature, topK, topP, v, repeatPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplerSettings withPenalties(float repeat, float presence, float frequency, int lastN) {
        return new SamplerSettings(temperature, topK, topP, minP, repeat, presence, frequency, lastN, seed);
    }

    public SamplerSettings withSeed(long v) {
        return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, presencePenalty, frequencyPenalty, penaltyLastN, v);
    }
}
