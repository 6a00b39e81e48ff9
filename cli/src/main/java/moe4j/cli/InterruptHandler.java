package moe4j.cli;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.concurrent.atomic.AtomicReference;

import moe4j.engine.generation.CancellationToken;

/**
 * Ctrl-C (SIGINT) during a reply cancels that reply; at any other time it exits as usual (status 130).
 * Uses {@code sun.misc.Signal} (module {@code jdk.unsupported}) through reflection, so that where it is
 * missing Ctrl-C simply keeps its default behaviour; the previous handler is restored on close.
 */
final class InterruptHandler implements AutoCloseable {

    private static final int EXIT_ON_INTERRUPT = 130;

    private final AtomicReference<CancellationToken> current = new AtomicReference<>();
    /** The handler replaced, restored on close; null when none was installed. */
    private Object previous;

    private InterruptHandler() {}

    /** Installs the handler; without {@code sun.misc.Signal} (or SIGINT) it is a no-op. */
    static InterruptHandler install() {
        InterruptHandler handler = new InterruptHandler();
        handler.previous = swap(handler::interrupted);
        return handler;
    }

    /** Ctrl-C now cancels {@code token} (until {@link #disarm}). */
    void arm(CancellationToken token) {
        current.set(token);
    }

    void disarm() {
        current.set(null);
    }

    private void interrupted() {
        CancellationToken token = current.get();
        if (token != null) {
            token.cancel();
        } else {
            System.exit(EXIT_ON_INTERRUPT);
        }
    }

    @Override
    public void close() {
        if (previous != null) {
            install(previous);
        }
    }

    /** Makes {@code action} the SIGINT handler; returns the previous handler, or null when unsupported. */
    private static Object swap(Runnable action) {
        try {
            Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
            Object handler = Proxy.newProxyInstance(handlerType.getClassLoader(), new Class<?>[] {handlerType},
                    (proxy, method, args) -> switch (method.getName()) {
                        case "handle" -> {
                            action.run();
                            yield null;
                        }
                        case "hashCode" -> System.identityHashCode(proxy);
                        case "equals" -> proxy == args[0];
                        default -> "moe4j chat interrupt handler";
                    });
            return install(handler);
        } catch (ClassNotFoundException | LinkageError e) {
            return null;
        }
    }

    private static Object install(Object handler) {
        try {
            Class<?> signalType = Class.forName("sun.misc.Signal");
            Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
            Object sigint = signalType.getConstructor(String.class).newInstance("INT");
            Method handle = signalType.getMethod("handle", signalType, handlerType);
            return handle.invoke(null, sigint, handler);
        } catch (InvocationTargetException e) {
            // e.g. SIGINT is reserved because the JVM runs with -Xrs
            return null;
        } catch (ReflectiveOperationException | LinkageError e) {
            return null;
        }
    }
}
