package moe4j.kernels.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUgraph;
import jcuda.driver.CUgraphExec;
import moe4j.kernels.StepRecorder;

/**
 * One session's decode step as a CUDA graph: recorded on the first run of a key, then replayed for
 * every token with the token id and position written to {@link #scalars} (two ints) just before the
 * launch; the kernels that depend on them read them there. The state is guarded by the backend's lock
 * ({@link CudaBackend#step}).
 */
final class CudaStepGraph implements StepRecorder {

    private final CudaBackend backend;
    /** Device ints: the token id, then the position. */
    CUdeviceptr scalars;
    /** Pinned host copy of the scalars, so the copy to the device can be asynchronous. */
    Pointer host;
    ByteBuffer hostInts;
    /** Recorded after each copy of the scalars: the host buffer may be rewritten once it completed. */
    CUevent copied;
    Object key;
    CUgraph graph;
    CUgraphExec exec;
    /** Token ids the recorded embedding accepts: 0 .. tokenLimit-1. */
    int tokenLimit;
    /** Positions the recorded step may replay at without leaving its KV caches. */
    int minPosition;
    int maxPosition;
    /** Why this recorder runs steps directly (a recording failed), or null. */
    String disabled;

    CudaStepGraph(CudaBackend backend) {
        this.backend = backend;
    }

    @Override
    public void run(Object key, int token, int position, Runnable step) {
        backend.step(this, key, token, position, step);
    }

    /** Null while steps are replayed as graphs, else why they run directly (tests, diagnostics). */
    String disabledReason() {
        return disabled;
    }

    boolean recorded() {
        return exec != null;
    }

    void setScalars(int token, int position) {
        if (hostInts == null) {
            hostInts = host.getByteBuffer(0, 8).order(ByteOrder.nativeOrder());
        }
        hostInts.putInt(0, token).putInt(4, position);
    }

    @Override
    public void close() {
        backend.release(this);
    }
}
