package moe4j.engine.placement;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Main memory bandwidth from its type: a DDR channel moves 8 bytes per transfer, so DDR5-5600 gives
 * 5600 MT/s x 8 B = 44.8 GB/s per channel (JEDEC peak); a desktop has 2 channels, servers 8 or 12.
 *
 * @param generation DDR generation (4 or 5, for the label only)
 * @param megaTransfersPerSecond the speed grade, e.g. 5600
 * @param channels populated memory channels
 */
public record SystemMemory(int generation, int megaTransfersPerSecond, int channels) {

    /** A common desktop: dual-channel DDR5-5600. */
    public static final SystemMemory DEFAULT = new SystemMemory(5, 5600, 2);

    private static final Pattern TYPE = Pattern.compile("ddr(\\d)-?(\\d{3,5})");

    public SystemMemory {
        if (generation < 1 || megaTransfersPerSecond <= 0 || channels <= 0 || channels > 64) {
            throw new IllegalArgumentException("invalid memory: DDR" + generation + "-" + megaTransfersPerSecond + " x "
                    + channels + " channels");
        }
    }

    /** Parses {@code ddr5-5600} or {@code DDR4-3200} with the given channel count. */
    public static SystemMemory parse(String type, int channels) {
        Matcher m = TYPE.matcher(type.strip().toLowerCase(Locale.ROOT));
        if (!m.matches()) {
            throw new IllegalArgumentException("unknown memory type '" + type + "' (expected e.g. ddr4-3200, ddr5-5600)");
        }
        if (channels <= 0 || channels > 64) {
            throw new IllegalArgumentException("memory channels must be in 1..64, got " + channels);
        }
        return new SystemMemory(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), channels);
    }

    /** Peak bandwidth in 10<sup>9</sup> bytes per second. */
    public double bandwidthGBps() { return megaTransfersPerSecond * 8.0 * channels / 1000.0; }

    public String label() {
        return "DDR" + generation + "-" + megaTransfersPerSecond + " x" + channels;
    }
}
