package moe4j.gguf;

import java.lang.management.ManagementFactory;

/** This machine's (or container's) physical memory, which every size check and report against RAM asks for. */
public final class PhysicalMemory {

    private PhysicalMemory() {}

    /** Total physical memory in bytes, as the JVM's operating-system bean reports it. */
    public static long bytes() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getTotalMemorySize();
    }
}
