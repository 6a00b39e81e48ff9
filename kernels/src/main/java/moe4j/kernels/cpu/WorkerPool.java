package moe4j.kernels.cpu;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A fixed set of threads that runs one data-parallel loop at a time; the calling thread takes part
 * as worker 0. Work is handed out in chunks on demand, so which worker computes an element varies,
 * but every element is computed by exactly one worker with the same code: results never depend on
 * the number of threads. Loops from concurrent callers are serialized, so a worker index (and any
 * scratch keyed by it) belongs to one loop at a time.
 */
public final class WorkerPool implements AutoCloseable {

    /** The body of a parallel loop: handles indices {@code [from, to)} on worker {@code worker}. */
    @FunctionalInterface
    public interface RangeTask {
        void run(int from, int to, int worker);
    }

    /**
     * Spins of a waiting thread before it parks ({@code -Dmoe4j.cpu.spins=N}): parked helpers take tens of
     * microseconds to wake, which a placement that alternates GPU and CPU work every layer pays each time.
     */
    private static final int SPINS = Integer.getInteger("moe4j.cpu.spins", 2_000);

    private final int spinLimit;

    private final int threads;
    private final Thread[] helpers;
    /**
     * 1 while helper {@code i} is parked or about to park. A loop's start unparks only those, and only along a binary
     * tree (the caller its two children, each helper that sees the loop its own two): on 16 threads, unparking every
     * helper one after another kept the caller in fifteen system calls before its own share of each loop.
     */
    private final AtomicIntegerArray sleeping;
    private final ReentrantLock submit = new ReentrantLock();
    /** The loop's generation (high 32 bits) and its first index not yet handed out (low 32 bits). */
    private final AtomicLong next = new AtomicLong();
    /** Indices of the current loop not yet finished. */
    private final AtomicInteger pending = new AtomicInteger();

    // Published to helpers by the volatile write of generation.
    private RangeTask task;
    private int count;
    private int grain;
    private volatile long generation;
    private volatile Thread caller;
    private volatile Throwable failure;
    private volatile boolean closed;

    /** Starts {@code threads - 1} daemon helper threads. */
    public WorkerPool(int threads) {
        this(threads, SPINS);
    }

    /** As {@link #WorkerPool(int)}, with waiting threads parking after {@code spins} spins (tests: 0). */
    WorkerPool(int threads, int spins) {
        if (threads < 1) {
            throw new IllegalArgumentException("thread count must be at least 1, got " + threads);
        }
        this.spinLimit = Math.max(0, spins);
        this.threads = threads;
        this.helpers = new Thread[threads - 1];
        this.sleeping = new AtomicIntegerArray(threads - 1);
        for (int i = 0; i < helpers.length; i++) {
            int worker = i + 1;
            helpers[i] = Thread.ofPlatform().daemon().name("moe4j-cpu-" + worker).unstarted(() -> helperLoop(worker));
            helpers[i].start();
        }
    }

    public int threads() { return threads; }

    /**
     * Runs {@code task} over {@code [0, count)} in chunks of about {@code grain} indices and returns when
     * all are done. An exception thrown by any chunk is rethrown here after the loop has drained.
     */
    public void parallelFor(int count, int grain, RangeTask task) {
        if (count <= 0) {
            return;
        }
        int g = Math.max(1, grain);
        submit.lock();
        try {
            if (closed) {
                throw new IllegalStateException("the CPU worker pool is closed");
            }
            if (helpers.length == 0 || count <= g) {
                // still under the lock: worker 0's scratch belongs to one loop at a time
                task.run(0, count, 0);
                return;
            }
            // the new generation with nothing to hand out first: a helper still draining the last loop must fail
            // its claims before this loop's fields change under it
            long loop = generation + 1;
            next.set(loop << 32 | Integer.MAX_VALUE);
            this.task = task;
            this.count = count;
            this.grain = g;
            this.failure = null;
            this.caller = Thread.currentThread();
            pending.set(count);
            next.set(loop << 32);
            generation = loop;
            wakeChildren(0);
            drain(loop, 0);
            // the loop is done when its indices are, not when every helper has reported: a helper that was
            // parked and wakes late (tens of microseconds on a busy machine) finds nothing left and costs nothing
            int spins = 0;
            while (pending.get() != 0) {
                if (spins++ < spinLimit) {
                    Thread.onSpinWait();
                } else {
                    LockSupport.park(this);
                }
            }
            this.task = null;
            Throwable f = failure;
            if (f != null) {
                if (f instanceof RuntimeException re) {
                    throw re;
                }
                if (f instanceof Error e) {
                    throw e;
                }
                throw new IllegalStateException(f);
            }
        } finally {
            submit.unlock();
        }
    }

    /**
     * Takes chunks of loop {@code loop} until none is left. A chunk is half the remaining indices' share per thread
     * (at least the grain), so chunks shrink towards the end and the workers finish together: with fixed chunks of
     * a sixteenth per thread, the last one kept a worker busy while the other spun, about 8% of a decoding step on
     * 2 threads. The generation in {@link #next} makes a claim fail once its loop is over, so a helper that read
     * the previous loop's state never takes indices of the next one. After a failure the rest is claimed without
     * running it, so that the loop still ends.
     */
    private void drain(long loop, int worker) {
        while (true) {
            long claim = next.get();
            if (claim >>> 32 != (loop & 0xFFFF_FFFFL)) {
                return;
            }
            int from = (int) claim;
            int total = count;
            if (from >= total) {
                return;
            }
            int to = failure != null ? total
                    : (int) Math.min(total, (long) from + Math.max(grain, (total - from) / (2 * threads)));
            if (!next.compareAndSet(claim, claim - from + to)) {
                continue;
            }
            if (failure == null) {
                try {
                    task.run(from, to, worker);
                } catch (Throwable t) {
                    if (failure == null) {
                        failure = t;
                    }
                }
            }
            if (pending.addAndGet(from - to) == 0) {
                LockSupport.unpark(caller);
            }
        }
    }

    private void helperLoop(int worker) {
        int slot = worker - 1;
        long seen = 0;
        while (true) {
            int spins = 0;
            while (generation == seen && !closed) {
                if (spins++ < spinLimit) {
                    Thread.onSpinWait();
                } else {
                    // flag first, then look again: a loop published before the flag is seen here, one published
                    // after it finds the flag (both are volatile, so one of the two reads sees the other's write)
                    sleeping.set(slot, 1);
                    if (generation == seen && !closed) {
                        LockSupport.park(this);
                    }
                    sleeping.set(slot, 0);
                }
            }
            if (closed) {
                return;
            }
            seen = generation;
            wakeChildren(worker);
            drain(seen, worker);
        }
    }

    /** Unparks the helpers below {@code worker} in the wake-up tree (workers {@code 2w+1} and {@code 2w+2}) that sleep. */
    private void wakeChildren(int worker) {
        for (int child = 2 * worker + 1; child <= 2 * worker + 2 && child < threads; child++) {
            if (sleeping.get(child - 1) != 0) {
                LockSupport.unpark(helpers[child - 1]);
            }
        }
    }

    /** Stops the helper threads; later loops fail. */
    @Override
    public void close() {
        submit.lock();
        try {
            closed = true;
            for (Thread t : helpers) {
                LockSupport.unpark(t);
            }
        } finally {
            submit.unlock();
        }
    }
}
