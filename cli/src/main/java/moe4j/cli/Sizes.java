package moe4j.cli;

import java.util.Locale;

/** Human-readable numbers for command output. */
final class Sizes {

    private static final String[] BINARY_UNITS = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    private static final String[] DECIMAL_UNITS = {"", "K", "M", "B", "T"};

    private Sizes() {}

    /** {@code 1189581088} -> {@code "1.11 GiB"}; below 1 KiB the exact count, e.g. {@code "512 B"}. */
    static String bytes(long n) {
        if (n < 1024) {
            return n + " B";
        }
        double v = n;
        int unit = 0;
        while (v >= 1024 && unit < BINARY_UNITS.length - 1) {
            v /= 1024;
            unit++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, BINARY_UNITS[unit]);
    }

    /** A count in thousands/millions/billions: {@code 30532122624} -> {@code "30.53 B"}. */
    static String count(long n) {
        if (n < 1000) {
            return Long.toString(n);
        }
        double v = n;
        int unit = 0;
        while (v >= 1000 && unit < DECIMAL_UNITS.length - 1) {
            v /= 1000;
            unit++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, DECIMAL_UNITS[unit]);
    }
}
