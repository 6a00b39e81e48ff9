package moe4j.engine.model;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import moe4j.kernels.Activations;
import moe4j.kernels.Backend;
import moe4j.kernels.ExpertBuffers;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.StepRecorder;

/**
 * One session's working memory for a graph: named activation buffers sized for batches of up to
 * {@link #capacity()} tokens, allocated when the graph reserves them and reused by every step.
 * Layers of the same shape share buffers, since layers run one after another. Closing releases them
 * (device memory on a GPU).
 *
 * <p>A graph placed on several backends has one such workspace per backend: {@link #across} makes them, {@link #on}
 * picks one, {@link #transfer} copies a buffer's rows from one to another.
 */
public final class Workspace implements AutoCloseable {

    private final Backend backend;
    private final int capacity;
    private final Map<String, Activations> buffers = new HashMap<>();
    /** The workspace of each backend of the graph; {@code this} among them. */
    private final Workspace[] parts;
    private ExpertRouting routing;
    private ExpertBuffers expertBuffers;
    private StepRecorder stepRecorder;
    /** Recorders of the parts of a decode step placed across backends ({@link #segmentRecorder}). */
    private final Map<Integer, StepRecorder> segmentRecorders = new HashMap<>();
    /** One row on its way between backends, through the host. */
    private float[] hostRows = new float[0];

    public Workspace(Backend backend, int capacity) {
        this(backend, capacity, null);
    }

    private Workspace(Backend backend, int capacity, Workspace[] parts) {
        if (capacity <= 0) {
            throw new IllegalArgumentException("batch capacity must be positive, got " + capacity);
        }
        this.backend = backend;
        this.capacity = capacity;
        this.parts = parts != null ? parts : new Workspace[] {this};
    }

    /** One workspace per backend, in order; the result is the first backend's, {@link #on} gives each. */
    public static Workspace across(List<Backend> backends, int capacity) {
        Workspace[] parts = new Workspace[backends.size()];
        for (int i = 0; i < parts.length; i++) {
            parts[i] = new Workspace(backends.get(i), capacity, parts);
        }
        return parts[0];
    }

    /** The workspace of backend {@code index} (of {@link #across}); {@code on(0)} of a one-backend workspace is itself. */
    public Workspace on(int index) {
        return parts[index];
    }

    /**
     * Copies rows {@code [0, n)} of buffer {@code name} from the workspace of backend {@code from} to that of backend
     * {@code to} (where it must exist too), row by row through the host.
     */
    public void transfer(String name, int from, int to, int n) {
        Workspace a = parts[from];
        Workspace b = parts[to];
        Activations src = a.buffers.get(name);
        Activations dst = b.buffers.get(name);
        if (src == null || dst == null) {
            throw new IllegalStateException("workspace buffer " + name + " is missing on backend "
                    + (src == null ? from : to));
        }
        int floats = Math.multiplyExact(n, src.width());
        if (hostRows.length < floats) {
            hostRows = new float[floats];
        }
        a.backend.readRows(src, 0, n, hostRows, 0);
        b.backend.writeRows(hostRows, 0, dst, 0, n);
    }

    /** Maximum tokens per step. */
    public int capacity() { return capacity; }

    /** The buffer called {@code name}, allocated with {@code rows} rows of {@code width} on first request. */
    public Activations buffer(String name, int rows, int width) {
        Activations a = buffers.get(name);
        if (a == null) {
            a = backend.allocate(rows, width);
            buffers.put(name, a);
        } else if (a.capacity() != rows || a.width() != width) {
            throw new IllegalStateException("workspace buffer " + name + " is " + a.capacity() + " x " + a.width()
                    + ", requested " + rows + " x " + width);
        }
        return a;
    }

    /** A buffer of {@link #capacity()} rows. */
    public Activations buffer(String name, int width) {
        return buffer(name, capacity, width);
    }

    /** The expert routing scratch for {@code experts} experts, {@code k} per token. */
    public ExpertRouting routing(int experts, int k) {
        if (routing == null) {
            routing = backend.allocateRouting(experts, k, capacity);
        } else if (routing.experts() != experts || routing.k() != k) {
            throw new IllegalStateException("workspace routing is for " + routing.experts() + " experts, "
                    + routing.k() + " per token; requested " + experts + ", " + k);
        }
        return routing;
    }

    /** The mixture-of-experts buffers for {@code k} experts per token of FFN width {@code expertFfn}. */
    public ExpertBuffers expertBuffers(int k, int width, int expertFfn) {
        if (expertBuffers == null) {
            expertBuffers = ExpertBuffers.allocate(backend, capacity, k, width, expertFfn);
        } else if (expertBuffers.gate().capacity() != capacity * k || expertBuffers.gate().width() != expertFfn
                || expertBuffers.input().width() != width) {
            throw new IllegalStateException("workspace expert buffers do not fit " + k + " experts per token of width "
                    + expertFfn);
        }
        return expertBuffers;
    }

    /** Runs this session's decode steps (a backend may record the first and replay it). */
    public StepRecorder stepRecorder() {
        if (stepRecorder == null) {
            stepRecorder = backend.stepRecorder();
        }
        return stepRecorder;
    }

    /**
     * Runs part {@code index} of this session's decode steps across backends: the operations on this backend between
     * two copies of the activations, which the backend may record and replay as {@link #stepRecorder} does a whole
     * step.
     */
    public StepRecorder segmentRecorder(int index) {
        return segmentRecorders.computeIfAbsent(index, i -> backend.stepRecorder());
    }

    @Override
    public void close() {
        for (Workspace w : parts) {
            w.release();
        }
    }

    private void release() {
        if (stepRecorder != null) {
            stepRecorder.close();
            stepRecorder = null;
        }
        segmentRecorders.values().forEach(StepRecorder::close);
        segmentRecorders.clear();
        buffers.values().forEach(Activations::close);
        buffers.clear();
        if (routing != null) {
            routing.close();
            routing = null;
        }
        if (expertBuffers != null) {
            expertBuffers.close();
            expertBuffers = null;
        }
    }
}
