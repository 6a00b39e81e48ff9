package moe4j.engine.placement;

import java.util.Locale;

/**
 * The link between a GPU and the host, over which activations cross when consecutive parts of the model sit on
 * different devices. Bandwidths are the PCI-SIG per-direction figures for 16 lanes after line encoding
 * (128b/130b from PCIe 3.0 on): 8, 16 and 32 GT/s per lane.
 */
public enum HostLink {
    PCIE3_X16("pcie3", "PCIe 3.0 x16", 15.75),
    PCIE4_X16("pcie4", "PCIe 4.0 x16", 31.5),
    PCIE5_X16("pcie5", "PCIe 5.0 x16", 63.0);

    /**
     * Time one small synchronous copy takes however few its bytes (driver call, DMA setup, completion): a hidden
     * state of a few KiB costs this, not its bandwidth. About 10 µs is what a small {@code cudaMemcpy} over PCIe
     * typically measures.
     */
    public static final double TRANSFER_LATENCY_SECONDS = 10e-6;

    private final String key;
    private final String label;
    private final double gigabytesPerSecond;

    HostLink(String key, String label, double gigabytesPerSecond) {
        this.key = key;
        this.label = label;
        this.gigabytesPerSecond = gigabytesPerSecond;
    }

    /** The name the command line uses, e.g. {@code pcie4}. */
    public String key() { return key; }

    public String label() { return label; }

    /** Per direction, in 10<sup>9</sup> bytes per second. */
    public double gigabytesPerSecond() { return gigabytesPerSecond; }

    /** Parses {@code pcie3}, {@code pcie4} or {@code pcie5} (any case). */
    public static HostLink parse(String text) {
        String s = text.strip().toLowerCase(Locale.ROOT);
        for (HostLink l : values()) {
            if (l.key.equals(s)) {
                return l;
            }
        }
        throw new IllegalArgumentException("unknown link '" + text + "' (expected pcie3, pcie4 or pcie5)");
    }
}
