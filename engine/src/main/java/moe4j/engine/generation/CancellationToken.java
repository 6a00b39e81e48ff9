package moe4j.engine.generation;

/** A flag another thread sets to stop a generation; checked between tokens. */
public final class CancellationToken {

    private volatile boolean cancelled;

    public void cancel() {
        cancelled = true;
    }

    public boolean isCancelled() {
        return cancelled;
    }
}
