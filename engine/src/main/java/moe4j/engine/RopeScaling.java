package moe4j.engine;

import java.util.Locale;

/**
 * How a model stretches RoPE beyond its training context ({@code {arch}.rope.scaling.*}).
 *
 * @param type            scaling method
 * @param factor          context multiplier (1 = none)
 * @param originalContext context the model was trained with, for YaRN's ramp
 * @param attnFactor      extra magnitude multiplier ({@code rope.scaling.attn_factor})
 */
public record RopeScaling(Type type, float factor, int originalContext, float attnFactor) {

    public enum Type {
        NONE, LINEAR, YARN;

        /** Parses the GGUF value; {@code longrope} and unknown methods are rejected. */
        static Type parse(String value, String key) {
            return switch (value.toLowerCase(Locale.ROOT)) {
                case "none" -> NONE;
                case "linear" -> LINEAR;
                case "yarn" -> YARN;
                default -> throw new UnsupportedModelException(key + " = '" + value
                        + "' is not supported (supported: none, linear, yarn)");
            };
        }
    }

    public static final RopeScaling NONE = new RopeScaling(Type.NONE, 1f, 0, 1f);

    /** True when positions are not rescaled at all. */
    public boolean isIdentity() {
        return type == Type.NONE || factor == 1f;
    }
}
