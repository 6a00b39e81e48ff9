package moe4j.kernels.cpu;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Function;
import java.util.logging.Logger;

import com.sun.management.HotSpotDiagnosticMXBean;

/**
 * The two HotSpot limits the CPU kernels want raised, and a note when they are not. C2 charges each compile with the
 * past traps and deoptimizations of every method it inlines, once per inlined call; a kernel inlines hundreds of Vector
 * API calls, so with the default limits (100 and 400) its compile can run out and leave the loop's vectors boxed on
 * the heap, at random from run to run (the README's "JVM options"). {@code ./moe4j} passes {@link #RECOMMENDED}; an
 * application that embeds moe4j gets one log line, at the first CPU backend, if its JVM runs with less.
 */
public final class JitOptions {

    private JitOptions() {}

    private static final Logger LOG = Logger.getLogger(JitOptions.class.getName());
    private static final AtomicBoolean NOTED = new AtomicBoolean();

    /** The trap limit, as {@code ./moe4j} passes it; a constant, so that JMH's fork annotations can name it. */
    public static final String TRAP_LIMIT = "-XX:PerMethodTrapLimit=10000";
    /** The recompilation cutoff, as {@code ./moe4j} passes it. */
    public static final String RECOMPILATION_CUTOFF = "-XX:PerMethodRecompilationCutoff=10000";

    /**
     * The JVM options: each value is the least the kernels want ({@code -1}, no limit, also satisfies the second).
     */
    public static final List<String> RECOMMENDED = List.of(TRAP_LIMIT, RECOMPILATION_CUTOFF);

    /**
     * Of {@link #RECOMMENDED}, the options this JVM lacks, given each limit's value as {@code value} reads it (null where
     * it cannot be read: that limit is not reported).
     */
    static List<String> missing(Function<String, String> value) {
        List<String> missing = new ArrayList<>();
        for (String option : RECOMMENDED) {
            int equals = option.indexOf('=');
            String name = option.substring("-XX:".length(), equals);
            long least = Long.parseLong(option.substring(equals + 1));
            String current = value.apply(name);
            if (current == null) {
                continue;
            }
            long v;
            try {
                v = Long.parseLong(current.trim());
            } catch (NumberFormatException e) {
                continue;
            }
            boolean unlimited = v < 0 && name.equals("PerMethodRecompilationCutoff");
            if (!unlimited && v < least) {
                missing.add(option);
            }
        }
        return missing;
    }

    /** Logs, once per JVM, which of {@link #RECOMMENDED} this JVM lacks, if any. */
    static void noteOnce() {
        if (!NOTED.compareAndSet(false, true)) {
            return;
        }
        HotSpotDiagnosticMXBean hotSpot;
        try {
            hotSpot = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
        } catch (RuntimeException | LinkageError e) {
            return; // not HotSpot, or no jdk.management module: nothing to say
        }
        if (hotSpot == null) {
            return;
        }
        List<String> missing = missing(name -> {
            try {
                return hotSpot.getVMOption(name).getValue();
            } catch (RuntimeException e) {
                return null;
            }
        });
        if (!missing.isEmpty()) {
            LOG.info(() -> "moe4j: for steady CPU speed run the JVM with " + String.join(" ", missing)
                    + " (C2 can otherwise leave a kernel's vectors boxed on the heap in some runs; README, JVM options)");
        }
    }
}
