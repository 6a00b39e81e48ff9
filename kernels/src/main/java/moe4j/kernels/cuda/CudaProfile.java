package moe4j.kernels.cuda;

import static moe4j.kernels.cuda.CudaDriver.check;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import jcuda.driver.CUevent;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

/**
 * The GPU time of every operation of the CUDA backends, for finding where a step's time goes. Enabled by
 * {@code -Dmoe4j.cuda.profile=true} (off by default: the backend then pays one constant branch per launch);
 * decode steps then run with direct launches, never as recorded graphs. Each timed kernel or device copy is
 * preceded by a device-side wait of {@code moe4j.cuda.profile.delayMicros} (default 100) and bracketed by two
 * events: while the GPU waits, the host enqueues the kernel and its end event, so that the events time the
 * kernel as the GPU runs it back to back, not the host's launch cost. Operations are aggregated by name,
 * e.g. {@code attn_q mv_Q4_K}, with the bytes of weights (or cache) they read and the floating-point
 * operations of their products.
 */
public final class CudaProfile {

    static final boolean ENABLED = Boolean.getBoolean("moe4j.cuda.profile");
    private static final long DELAY_NANOS = 1000L * Long.getLong("moe4j.cuda.profile.delayMicros", 100);
    /** Launches timed before the pending events are read (and their events reused): bounds the events held. */
    private static final int MAX_PENDING = 4096;
    private static final Set<CudaBackend> BACKENDS = Collections.synchronizedSet(
            Collections.newSetFromMap(new IdentityHashMap<>()));

    /**
     * The name under which {@link #take} reports an empty kernel timed like the others: what the events and
     * the launch add to every operation's time.
     */
    public static final String CALIBRATION = "(empty kernel)";
    private static final int CALIBRATION_RUNS = 16;

    /** One operation name's total: calls, GPU microseconds, bytes read from weights or cache, flops. */
    public record Op(String name, long calls, double micros, long bytes, long flops) {}

    private CudaProfile() {}

    /** Whether the backends time their operations ({@code -Dmoe4j.cuda.profile=true}). */
    public static boolean enabled() {
        return ENABLED;
    }

    /**
     * Waits for every profiled backend and returns the operations timed since the last call (in the order
     * each name first ran), forgetting them.
     */
    public static List<Op> take() {
        Map<String, Op> all = new LinkedHashMap<>();
        for (CudaBackend b : BACKENDS.toArray(CudaBackend[]::new)) {
            for (Op op : b.takeProfile()) {
                all.merge(op.name(), op, (x, y) -> new Op(x.name(), x.calls() + y.calls(), x.micros() + y.micros(),
                        x.bytes() + y.bytes(), x.flops() + y.flops()));
            }
        }
        return new ArrayList<>(all.values());
    }

    static void register(CudaBackend backend) {
        BACKENDS.add(backend);
    }

    static void unregister(CudaBackend backend) {
        BACKENDS.remove(backend);
    }

    /** One backend's timings; used under the backend's lock, with its context current. */
    static final class Recorder {

        private record Pending(String name, long bytes, long flops, CUevent start, CUevent end) {}

        private final CUstream stream;
        private final Delay delay;
        private final ArrayDeque<CUevent> free = new ArrayDeque<>();
        private final List<Pending> pending = new ArrayList<>();
        private final Map<String, Op> totals = new LinkedHashMap<>();

        Recorder(CUstream stream, Delay delay) {
            this.stream = stream;
            this.delay = delay;
        }

        /** Enqueues the wait and the start event of the next timed operation. */
        CUevent begin() {
            delay.enqueue(DELAY_NANOS);
            CUevent start = event();
            check(JCudaDriver.cuEventRecord(start, stream), "recording a profiling event");
            return start;
        }

        /** Enqueues the end event of the operation begun with {@code start}. */
        void end(CUevent start, String name, long bytes, long flops) {
            CUevent end = event();
            check(JCudaDriver.cuEventRecord(end, stream), "recording a profiling event");
            pending.add(new Pending(name, bytes, flops, start, end));
            if (pending.size() >= MAX_PENDING) {
                collect();
            }
        }

        /** Waits for the pending events and adds their times to the totals. */
        void collect() {
            if (pending.isEmpty()) {
                return;
            }
            check(JCudaDriver.cuEventSynchronize(pending.getLast().end()), "waiting for profiled kernels");
            float[] ms = new float[1];
            for (Pending p : pending) {
                check(JCudaDriver.cuEventElapsedTime(ms, p.start(), p.end()), "reading a profiling event");
                double micros = 1000.0 * ms[0];
                totals.merge(p.name(), new Op(p.name(), 1, micros, p.bytes(), p.flops()),
                        (x, y) -> new Op(x.name(), x.calls() + 1, x.micros() + y.micros(), x.bytes() + y.bytes(),
                                x.flops() + y.flops()));
                free.add(p.start());
                free.add(p.end());
            }
            pending.clear();
        }

        List<Op> take() {
            for (int i = 0; i < CALIBRATION_RUNS; i++) {
                CUevent start = begin();
                delay.enqueue(0);
                end(start, CALIBRATION, 0, 0);
            }
            collect();
            List<Op> ops = new ArrayList<>(totals.values());
            totals.clear();
            return ops;
        }

        void destroy() {
            collect();
            for (CUevent e : free) {
                JCudaDriver.cuEventDestroy(e);
            }
            free.clear();
        }

        private CUevent event() {
            CUevent e = free.poll();
            if (e == null) {
                e = new CUevent();
                check(JCudaDriver.cuEventCreate(e, 0), "creating a profiling event");
            }
            return e;
        }
    }

    /** Enqueues the device-side wait before a timed operation. */
    @FunctionalInterface
    interface Delay {
        void enqueue(long nanos);
    }
}
