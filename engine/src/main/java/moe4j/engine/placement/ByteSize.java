package moe4j.engine.placement;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Memory sizes as people write them: {@code 24G}, {@code 24GiB}, {@code 24GB}, {@code 512M}, {@code 1.5T}. Every
 * unit is binary ({@code G} = {@code GB} = {@code GiB} = 2<sup>30</sup> bytes), as GPU memory is sold: a "24 GB"
 * card holds 24 GiB. A bare number is refused, so that {@code --gpu 24} cannot silently mean 24 bytes.
 */
public final class ByteSize {

    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([KMGT])?(I?B)?",
            Pattern.CASE_INSENSITIVE);

    private ByteSize() {}

    /** @throws IllegalArgumentException naming the text when it is not a positive size with a unit */
    public static long parse(String text) {
        String s = text.strip().toUpperCase(Locale.ROOT);
        Matcher m = SIZE.matcher(s);
        if (!m.matches() || (m.group(2) == null && m.group(3) == null)) {
            throw new IllegalArgumentException("invalid size '" + text + "': expected a number with a unit such as"
                    + " 512M, 24G or 1.5T (binary units: G = GiB)");
        }
        if (m.group(2) == null && "IB".equals(m.group(3))) {
            throw new IllegalArgumentException("invalid size '" + text + "': 'iB' needs a prefix (KiB, MiB, GiB, TiB)");
        }
        int shift = m.group(2) == null ? 0 : switch (m.group(2)) {
            case "K" -> 10;
            case "M" -> 20;
            case "G" -> 30;
            default -> 40;
        };
        double bytes = Double.parseDouble(m.group(1)) * (1L << shift);
        if (!(bytes >= 1) || bytes > (double) (1L << 60)) {
            throw new IllegalArgumentException("invalid size '" + text + "': must be between 1 byte and 1 EiB");
        }
        return Math.round(bytes);
    }

    /** {@code 25769803776} -> {@code "24.00 GiB"}; below 1 KiB the exact count. */
    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        if (Math.abs(bytes) < 1024) {
            return bytes + " B";
        }
        double v = bytes;
        int unit = 0;
        while (Math.abs(v) >= 1024 && unit < units.length - 1) {
            v /= 1024;
            unit++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, units[unit]);
    }
}
