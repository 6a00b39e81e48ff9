package moe4j.engine.placement;

import java.util.Objects;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Puts every tensor whose name contains a match of {@code pattern} on {@code device}, as llama.cpp's
 * {@code -ot REGEX=DEVICE}: {@code exps=cpu} keeps all expert tensors in system RAM,
 * {@code blk\.(1[0-9])\.=cuda:1} puts layers 10-19 on the second GPU.
 *
 * @param device a device name ({@code cpu}, {@code cuda:N}); {@link #parse} also accepts llama.cpp's
 *               {@code CPU} and {@code CUDAN}
 */
public record TensorOverride(Pattern pattern, String device) {

    public TensorOverride {
        Objects.requireNonNull(pattern, "pattern");
        Objects.requireNonNull(device, "device");
    }

    /** True when {@code tensorName} contains a match of the pattern. */
    public boolean matches(String tensorName) {
        return pattern.matcher(tensorName).find();
    }

    /**
     * Parses {@code REGEX=DEVICE} (the last {@code =} separates them).
     *
     * @throws IllegalArgumentException naming the text when it is malformed
     */
    public static TensorOverride parse(String text) {
        int eq = text.lastIndexOf('=');
        if (eq <= 0 || eq == text.length() - 1) {
            throw new IllegalArgumentException("invalid tensor override '" + text + "': expected REGEX=DEVICE, e.g."
                    + " exps=cpu");
        }
        Pattern p;
        try {
            p = Pattern.compile(text.substring(0, eq));
        } catch (PatternSyntaxException e) {
            throw new IllegalArgumentException("invalid tensor override '" + text + "': bad regular expression: "
                    + e.getDescription());
        }
        return new TensorOverride(p, normalizeDevice(text.substring(eq + 1)));
    }

    /** {@code CPU} -> {@code cpu}, {@code CUDA1} / {@code cuda1} / {@code gpu1} -> {@code cuda:1}. */
    static String normalizeDevice(String name) {
        String s = name.strip().toLowerCase(java.util.Locale.ROOT);
        if (s.matches("(cuda|gpu)\\d+")) {
            return "cuda:" + s.replaceAll("\\D", "");
        }
        if (s.equals("cuda") || s.equals("gpu")) {
            return "cuda:0";
        }
        return s;
    }

    @Override
    public String toString() {
        return pattern.pattern() + "=" + device;
    }
}
