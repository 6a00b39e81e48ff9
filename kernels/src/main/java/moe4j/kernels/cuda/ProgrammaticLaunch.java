package moe4j.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.reflect.Method;

import jcuda.NativePointerObject;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUstream;

/**
 * Kernel launches that let each kernel start while the one before it in the stream finishes (CUDA's
 * programmatic dependent launch, compute capability 9.0 and later): the kernels wait for their predecessor
 * on the device before they touch anything it may write ({@code pdl_wait} in {@code moe4j.cu}), so a
 * launch's latency and a product's first weight loads overlap the previous kernel's tail. A decode step is
 * hundreds of short dependent kernels, where that latency is a large share of the time.
 *
 * <p>JCuda 12.0 binds only {@code cuLaunchKernel}, which takes no launch attributes; this calls the driver's
 * {@code cuLaunchKernelEx} through the FFM API with the handles JCuda created (their addresses read through
 * JCuda's non-public accessor, as JCuda exposes none). {@code -Dmoe4j.cuda.pdl=false} launches through JCuda
 * as before, to compare the two on one machine.
 */
final class ProgrammaticLaunch {

    /** {@code CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION} of cuda.h. */
    private static final int PROGRAMMATIC_STREAM_SERIALIZATION = 6;
    /** {@code sizeof(CUlaunchConfig)} and {@code sizeof(CUlaunchAttribute)} on 64-bit Linux (cuda.h 12-13). */
    private static final long CONFIG_BYTES = 56;
    private static final long ATTRIBUTE_BYTES = 72;
    /** Offsets of {@code CUlaunchConfig}'s fields. */
    private static final long GRID_X = 0;
    private static final long GRID_Y = 4;
    private static final long GRID_Z = 8;
    private static final long BLOCK_X = 12;
    private static final long BLOCK_Y = 16;
    private static final long BLOCK_Z = 20;
    private static final long SHARED_BYTES = 24;
    private static final long STREAM = 32;
    private static final long ATTRIBUTES = 40;
    private static final long ATTRIBUTE_COUNT = 48;
    /** Offsets of {@code CUlaunchAttribute}'s id and of its value (a union whose first int is the flag set here). */
    private static final long ATTRIBUTE_ID = 0;
    private static final long ATTRIBUTE_VALUE = 8;

    private static final boolean REQUESTED = !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.pdl"));
    private static final MethodHandle LAUNCH;
    private static final MethodHandle NATIVE_POINTER;
    private static final MethodHandle BYTE_OFFSET;
    /** Why launches go through JCuda instead, or null. */
    private static final String UNAVAILABLE;

    static {
        MethodHandle launch = null;
        MethodHandle nativePointer = null;
        MethodHandle byteOffset = null;
        String unavailable = null;
        if (!REQUESTED) {
            unavailable = "off (-Dmoe4j.cuda.pdl=false)";
        } else {
            try {
                MemorySegment symbol = SymbolLookup.libraryLookup("libcuda.so.1", Arena.global())
                        .find("cuLaunchKernelEx")
                        .orElseThrow(() -> new IllegalStateException("the driver has no cuLaunchKernelEx"));
                launch = Linker.nativeLinker().downcallHandle(symbol,
                        FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS));
                nativePointer = accessor(NativePointerObject.class, "getNativePointer");
                byteOffset = accessor(Pointer.class, "getByteOffset");
            } catch (RuntimeException | ReflectiveOperationException e) {
                unavailable = "unavailable (" + e.getMessage() + ")";
                launch = null;
            }
        }
        LAUNCH = launch;
        NATIVE_POINTER = nativePointer;
        BYTE_OFFSET = byteOffset;
        UNAVAILABLE = unavailable;
    }

    private ProgrammaticLaunch() {}

    private static MethodHandle accessor(Class<?> owner, String name) throws ReflectiveOperationException {
        Method m = owner.getDeclaredMethod(name);
        m.setAccessible(true);
        return MethodHandles.lookup().unreflect(m);
    }

    /**
     * Null when kernels of a device of compute capability {@code major}.x can launch so, else why not (older
     * GPUs have no such launch; a missing driver entry point or {@code -Dmoe4j.cuda.pdl=false}).
     */
    static String unavailableReason(int major) {
        if (UNAVAILABLE != null) {
            return UNAVAILABLE;
        }
        return major >= 9 ? null : "not on compute capability " + major + ".x (9.0 and later)";
    }

    /**
     * The native memory of one backend's launches (a launch configuration, its attribute, the arguments and the
     * array pointing at them), written anew for each launch: the driver copies it all before
     * {@code cuLaunchKernelEx} returns. Not for concurrent launches (a backend's are serialized).
     */
    static final class Scratch {
        private static final int MAX_ARGS = 32;
        private final MemorySegment values;
        private final MemorySegment params;
        private final MemorySegment config;

        Scratch() {
            Arena arena = Arena.ofAuto();
            values = arena.allocate(8L * MAX_ARGS, 8);
            params = arena.allocate(ADDRESS, MAX_ARGS);
            for (int i = 0; i < MAX_ARGS; i++) {
                params.setAtIndex(ADDRESS, i, values.asSlice(8L * i, 8));
            }
            MemorySegment attribute = arena.allocate(ATTRIBUTE_BYTES, 8);
            attribute.set(JAVA_INT, ATTRIBUTE_ID, PROGRAMMATIC_STREAM_SERIALIZATION);
            attribute.set(JAVA_INT, ATTRIBUTE_VALUE, 1);
            config = arena.allocate(CONFIG_BYTES, 8);
            config.set(JAVA_INT, GRID_Z, 1);
            config.set(JAVA_INT, BLOCK_Y, 1);
            config.set(JAVA_INT, BLOCK_Z, 1);
            config.set(ADDRESS, ATTRIBUTES, attribute);
            config.set(JAVA_INT, ATTRIBUTE_COUNT, 1);
        }
    }

    /**
     * Enqueues {@code f} on {@code stream} with programmatic serialization; arguments as
     * {@link CudaBackend}'s launches take them (device pointer, Integer, Long, Float, null). Returns the
     * driver's result code.
     */
    static int launch(Scratch scratch, CUfunction f, int gridX, int gridY, int block, int sharedBytes,
                      CUstream stream, Object[] args) {
        if (args.length > Scratch.MAX_ARGS) {
            throw new IllegalArgumentException(args.length + " kernel arguments, at most " + Scratch.MAX_ARGS);
        }
        MemorySegment values = scratch.values;
        for (int i = 0; i < args.length; i++) {
            long at = 8L * i;
            switch (args[i]) {
                case null -> values.set(JAVA_LONG, at, 0L);
                case CUdeviceptr p -> values.set(JAVA_LONG, at, address(p));
                case Integer v -> values.set(JAVA_INT, at, v);
                case Long v -> values.set(JAVA_LONG, at, v);
                case Float v -> values.set(JAVA_FLOAT, at, v);
                default -> throw new IllegalArgumentException("kernel argument of type " + args[i].getClass());
            }
        }
        MemorySegment config = scratch.config;
        config.set(JAVA_INT, GRID_X, gridX);
        config.set(JAVA_INT, GRID_Y, gridY);
        config.set(JAVA_INT, BLOCK_X, block);
        config.set(JAVA_INT, SHARED_BYTES, sharedBytes);
        config.set(JAVA_LONG, STREAM, handle(stream));
        try {
            return (int) LAUNCH.invokeExact(config, MemorySegment.ofAddress(handle(f)), scratch.params,
                    MemorySegment.NULL);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException("cuLaunchKernelEx", e);
        }
    }

    private static long handle(NativePointerObject o) {
        try {
            return (long) NATIVE_POINTER.invoke(o);
        } catch (Throwable e) {
            throw new IllegalStateException("reading a JCuda handle", e);
        }
    }

    private static long address(CUdeviceptr p) {
        try {
            return (long) NATIVE_POINTER.invoke(p) + (long) BYTE_OFFSET.invoke(p);
        } catch (Throwable e) {
            throw new IllegalStateException("reading a JCuda device pointer", e);
        }
    }
}
