package moe4j.engine.placement;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A device the planner may put parts of a model on: a GPU ({@code cuda:N}, as {@code --device} names it) or the
 * CPU with system RAM ({@code cpu}).
 *
 * @param name          {@code cuda:N}, {@code cpu} (system RAM, where the token embedding lives), or {@code cpu:N} for a
 *                      further CPU backend instance, which the planner gives layers as it does a GPU
 * @param kind          GPU or CPU
 * @param hardware      what it is, for people: {@code RTX 4090}, {@code DDR5-5600 x2}, {@code GPU}
 * @param capacityBytes memory moe4j may use on it (a GPU's free memory; the RAM left for moe4j)
 * @param memoryGBps    peak memory bandwidth, 10<sup>9</sup> bytes per second
 * @param link          a GPU's link to the host; null for the CPU
 */
public record DeviceSpec(String name, Kind kind, String hardware, long capacityBytes, double memoryGBps,
                         HostLink link) {

    public enum Kind { GPU, CPU }

    public static final String CPU_NAME = "cpu";

    private static final Pattern REPEAT = Pattern.compile("(\\d+)\\s*[xX*]\\s*(.+)");

    public DeviceSpec {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(hardware, "hardware");
        if (capacityBytes <= 0) {
            throw new IllegalArgumentException(name + ": capacity must be positive, got " + capacityBytes);
        }
        if (!(memoryGBps > 0) || Double.isInfinite(memoryGBps)) {
            throw new IllegalArgumentException(name + ": memory bandwidth must be positive, got " + memoryGBps);
        }
        if ((kind == Kind.GPU) != (link != null)) {
            throw new IllegalArgumentException(name + ": a GPU needs a host link, the CPU has none");
        }
    }

    public static DeviceSpec gpu(int index, GpuCard card) {
        return new DeviceSpec("cuda:" + index, Kind.GPU, card.label(), card.memoryBytes(), card.bandwidthGBps(),
                card.link());
    }

    public static DeviceSpec gpu(int index, String hardware, long capacityBytes, double memoryGBps, HostLink link) {
        return new DeviceSpec("cuda:" + index, Kind.GPU, hardware, capacityBytes, memoryGBps, link);
    }

    public static DeviceSpec cpu(long capacityBytes, SystemMemory memory) {
        return new DeviceSpec(CPU_NAME, Kind.CPU, memory.label(), capacityBytes, memory.bandwidthGBps(), null);
    }

    /** A further CPU backend instance {@code cpu:N} ({@code n >= 1}) with {@code capacityBytes} of the RAM. */
    public static DeviceSpec cpuInstance(int n, long capacityBytes, SystemMemory memory) {
        if (n < 1) {
            throw new IllegalArgumentException("a further CPU instance is numbered from 1, got " + n);
        }
        return new DeviceSpec(CPU_NAME + ":" + n, Kind.CPU, memory.label(), capacityBytes, memory.bandwidthGBps(), null);
    }

    public boolean isGpu() { return kind == Kind.GPU; }

    public DeviceSpec withLink(HostLink newLink) {
        return new DeviceSpec(name, kind, hardware, capacityBytes, memoryGBps, newLink);
    }

    public DeviceSpec withMemoryGBps(double gbps) {
        return new DeviceSpec(name, kind, hardware, capacityBytes, gbps, link);
    }

    /**
     * GPUs from a comma-separated list, numbered {@code cuda:0, cuda:1, ...} in order. Each entry is a card
     * ({@code rtx4090}: its memory, bandwidth and link), a card with the memory free on it ({@code rtx4090:20G}),
     * or a size alone ({@code 24G}: a GPU with {@code genericGBps} bandwidth on {@code genericLink}); {@code 3x...}
     * repeats an entry.
     *
     * @throws IllegalArgumentException naming the entry that is not understood
     */
    public static List<DeviceSpec> parseGpus(String list, double genericGBps, HostLink genericLink) {
        List<DeviceSpec> gpus = new ArrayList<>();
        for (String raw : list.split(",")) {
            String entry = raw.strip();
            int count = 1;
            Matcher m = REPEAT.matcher(entry);
            if (m.matches()) {
                count = Integer.parseInt(m.group(1));
                entry = m.group(2).strip();
                if (count < 1 || count > 64) {
                    throw new IllegalArgumentException("GPU entry '" + raw.strip() + "': repeat count must be in 1..64");
                }
            }
            DeviceSpec template = parseGpu(entry, genericGBps, genericLink);
            for (int i = 0; i < count; i++) {
                gpus.add(new DeviceSpec("cuda:" + gpus.size(), Kind.GPU, template.hardware, template.capacityBytes,
                        template.memoryGBps, template.link));
            }
        }
        return gpus;
    }

    private static DeviceSpec parseGpu(String entry, double genericGBps, HostLink genericLink) {
        if (entry.isEmpty()) {
            throw new IllegalArgumentException("empty GPU entry (expected a card such as rtx4090, or a size such as 24G)");
        }
        int colon = entry.indexOf(':');
        String cardName = colon < 0 ? entry : entry.substring(0, colon);
        GpuCard card = GpuCard.find(cardName);
        if (card != null) {
            long capacity = colon < 0 ? card.memoryBytes() : ByteSize.parse(entry.substring(colon + 1));
            return gpu(0, card.label(), capacity, card.bandwidthGBps(), card.link());
        }
        if (colon >= 0 || !Character.isDigit(entry.charAt(0))) {
            throw new IllegalArgumentException("unknown GPU '" + cardName + "' (known: " + GpuCard.keys()
                    + "; or give its memory, e.g. 24G)");
        }
        return gpu(0, "GPU", ByteSize.parse(entry), genericGBps, genericLink);
    }
}
