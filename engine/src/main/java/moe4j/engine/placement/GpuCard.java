package moe4j.engine.placement;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Common GPUs with their memory, memory bandwidth and host link, from NVIDIA's datasheets (GPU memory is sold in
 * binary units: a "24 GB" card holds 24 GiB). The bandwidth is the datasheet peak; decoding reaches a fraction of
 * it, which is why the planner's speeds are ceilings.
 */
public enum GpuCard {
    RTX_3090("rtx3090", "RTX 3090", 24, 936, HostLink.PCIE4_X16),
    RTX_3090_TI("rtx3090ti", "RTX 3090 Ti", 24, 1008, HostLink.PCIE4_X16),
    RTX_4090("rtx4090", "RTX 4090", 24, 1008, HostLink.PCIE4_X16),
    RTX_5090("rtx5090", "RTX 5090", 32, 1792, HostLink.PCIE5_X16),
    A100_40G("a100-40g", "A100 40GB SXM", 40, 1555, HostLink.PCIE4_X16),
    A100_80G("a100-80g", "A100 80GB SXM", 80, 2039, HostLink.PCIE4_X16),
    H100_PCIE("h100-pcie", "H100 PCIe", 80, 2000, HostLink.PCIE5_X16),
    H100("h100", "H100 SXM", 80, 3350, HostLink.PCIE5_X16),
    /** Sold as 141 GB; drivers report about 140.4 GiB. */
    H200("h200", "H200 SXM", 140, 4800, HostLink.PCIE5_X16);

    private final String key;
    private final String label;
    private final int memoryGiB;
    private final double bandwidthGBps;
    private final HostLink link;

    GpuCard(String key, String label, int memoryGiB, double bandwidthGBps, HostLink link) {
        this.key = key;
        this.label = label;
        this.memoryGiB = memoryGiB;
        this.bandwidthGBps = bandwidthGBps;
        this.link = link;
    }

    /** The name the command line uses, e.g. {@code rtx4090}. */
    public String key() { return key; }

    public String label() { return label; }

    public long memoryBytes() { return (long) memoryGiB << 30; }

    /** Peak memory bandwidth in 10<sup>9</sup> bytes per second. */
    public double bandwidthGBps() { return bandwidthGBps; }

    public HostLink link() { return link; }

    /** The card called {@code name} ({@code rtx4090}, {@code RTX-4090}, {@code h100}...), or null. */
    public static GpuCard find(String name) {
        String s = name.strip().toLowerCase(Locale.ROOT).replace("_", "").replace(" ", "");
        for (GpuCard c : values()) {
            if (c.key.equals(s) || c.key.replace("-", "").equals(s.replace("-", ""))) {
                return c;
            }
        }
        return s.equals("a100") ? A100_80G : null;
    }

    /** The keys of all cards, for messages and help. */
    public static String keys() {
        return Arrays.stream(values()).map(GpuCard::key).collect(Collectors.joining(", "));
    }
}
