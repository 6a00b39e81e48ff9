package moe4j.cli.server;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import moe4j.engine.Model;
import moe4j.engine.Session;

/**
 * The server's sessions, each remembering which tokens its KV cache holds. A request takes the idle
 * session whose cache shares the longest prefix with its prompt and evaluates only the rest, so a
 * conversation that grows turn by turn re-evaluates only its new turns.
 */
final class SessionPool implements AutoCloseable {

    /** A session and the tokens at its cached positions {@code [0, session.position())}. */
    static final class Slot {
        private final Session session;
        private int[] cached = new int[0];

        private Slot(Session session) {
            this.session = session;
        }

        Session session() { return session; }

        /**
         * Keeps the longest cached prefix of {@code prompt} that leaves at least its last token to evaluate
         * (generation needs the logits after it); returns that prefix's length.
         */
        int reuse(int[] prompt) {
            int keep = Math.min(commonPrefix(prompt), prompt.length - 1);
            session.truncate(keep);
            return keep;
        }

        /** Records what the session holds after generating {@code generated} after {@code prompt}. */
        void remember(int[] prompt, int[] generated) {
            int held = session.position();
            int[] all = Arrays.copyOf(prompt, prompt.length + generated.length);
            System.arraycopy(generated, 0, all, prompt.length, generated.length);
            cached = Arrays.copyOf(all, Math.min(held, all.length));
        }

        /** After a failure the cache's contents are unknown: start from scratch next time. */
        void forget() {
            session.reset();
            cached = new int[0];
        }

        private int commonPrefix(int[] prompt) {
            int n = Math.min(Math.min(cached.length, prompt.length), session.position());
            int i = 0;
            while (i < n && cached[i] == prompt[i]) {
                i++;
            }
            return i;
        }
    }

    private final List<Slot> all;
    private final List<Slot> idle;

    /** Creates {@code size} sessions of the model's context length. */
    SessionPool(Model model, int size) {
        List<Slot> slots = new ArrayList<>(size);
        try {
            for (int i = 0; i < size; i++) {
                slots.add(new Slot(model.newSession()));
            }
        } catch (RuntimeException | Error e) {
            slots.forEach(s -> s.session.close());
            throw e;
        }
        this.all = List.copyOf(slots);
        this.idle = new ArrayList<>(slots);
    }

    /**
     * The idle slot with the longest cached prefix of {@code prompt}. Callers never hold more slots than
     * exist (the server runs at most {@code size} generations), so one is always idle.
     */
    synchronized Slot acquire(int[] prompt) {
        if (idle.isEmpty()) {
            throw new IllegalStateException("no idle session: more generations than sessions");
        }
        int best = 0;
        int bestPrefix = -1;
        for (int i = 0; i < idle.size(); i++) {
            int prefix = idle.get(i).commonPrefix(prompt);
            if (prefix > bestPrefix) {
                best = i;
                bestPrefix = prefix;
            }
        }
        return idle.remove(best);
    }

    synchronized void release(Slot slot) {
        idle.add(slot);
    }

    int size() { return all.size(); }

    synchronized int idleCount() { return idle.size(); }

    /** Positions each session holds. */
    int contextLength() { return all.getFirst().session.contextLength(); }

    /** Closes the sessions; only once no generation uses them. */
    @Override
    public void close() {
        all.forEach(s -> s.session.close());
    }
}
