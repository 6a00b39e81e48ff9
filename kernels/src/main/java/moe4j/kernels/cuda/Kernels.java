package moe4j.kernels.cuda;

import static moe4j.kernels.cuda.CudaDriver.check;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.zip.GZIPInputStream;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import moe4j.gguf.GgmlType;

/**
 * The kernels of {@code moe4j.cu}, loaded from the PTX shipped in the jar for the device's compute
 * capability (the driver compiles it for the exact GPU at load time).
 */
final class Kernels {

    /** The storage formats with device kernels: every format moe4j can decode. */
    static final Set<GgmlType> FORMATS = Collections.unmodifiableSet(java.util.EnumSet.of(
            GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
            GgmlType.IQ4_NL, GgmlType.IQ4_XS));

    /**
     * The formats whose matrix-vector products also have kernels with activations rounded to Q8_K (as the CPU
     * backend rounds them for these weights) and integer dot products: the K-quants of Q3_K_M, Q4_K_M and
     * Q5_K_M models.
     */
    static final Set<GgmlType> Q8K_FORMATS = Collections.unmodifiableSet(java.util.EnumSet.of(GgmlType.Q3_K,
            GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K));

    /**
     * Per-format entry points; the {@code q8k} ones are null for formats outside {@link #Q8K_FORMATS}.
     */
    record Format(CUfunction matvec, CUfunction matvecPair, CUfunction matvecCombine, CUfunction matmul,
                  CUfunction rows, CUfunction q8kMatvec, CUfunction q8kMatvecMulti, CUfunction q8kMatvecPair,
                  Combine q8kCombine, CUfunction q8kMatmul, Rounded rounded) {

        boolean hasQ8k() { return q8kMatvec != null; }
    }

    /**
     * The experts' down projection and combine (mvq_combine_*): rounding the SwiGLU rows in every block (plain) or
     * reading them rounded once (round_rows).
     */
    record Combine(CUfunction plain, CUfunction rounded) {}

    /**
     * The Q8_K matrix-vector kernels that read activation rows rounded already (add_rms_norm_rounded); matvecPairO8
     * is matvecPair compiled for 8 blocks a multiprocessor instead of 4 (mvq_pair_rounded_o8_*).
     */
    record Rounded(CUfunction matvec, CUfunction matvecMulti, CUfunction matvecPair, CUfunction matvecPairO8) {}

    /**
     * The formats whose batched products run on the tensor cores with activations rounded to Q8_K;
     * {@code -Dmoe4j.cuda.mmq=false} keeps them on the float tiles, to compare the two on one machine.
     */
    static final Set<GgmlType> MMQ_FORMATS = "false".equalsIgnoreCase(System.getProperty("moe4j.cuda.mmq"))
            ? Set.of() : Collections.unmodifiableSet(java.util.EnumSet.of(GgmlType.Q3_K,
                    GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K));

    final CUmodule module;
    final Map<GgmlType, Format> formats = new EnumMap<>(GgmlType.class);
    /** The kernels of blocks padded to 16-byte alignment: Q3_K's 110 bytes to 112 (*_q3_kp), Q6_K's 210 to 224. */
    final Map<GgmlType, Format> padded = new EnumMap<>(GgmlType.class);
    final CUfunction rmsNorm;
    final CUfunction addRmsNorm;
    final CUfunction addRmsNormRounded;
    final CUfunction roundRows;
    final CUfunction rmsNormRope;
    final CUfunction rope;
    final CUfunction add;
    final CUfunction siluMul;
    final CUfunction storeKvF16;
    final CUfunction storeKvF32;
    final CUfunction normRopeStoreF16;
    final CUfunction normRopeStoreF32;
    final CUfunction attentionF16;
    final CUfunction attentionF32;
    final CUfunction attentionDecodeF16;
    final CUfunction attentionDecodeF32;
    final CUfunction attentionDecodeRoundedF16;
    final CUfunction attentionDecodeRoundedF32;
    final CUfunction attentionTiledF16;
    final CUfunction attentionTiledF32;
    final CUfunction routeTopK;
    final CUfunction routeF32;
    final CUfunction routeF32OneWarp;
    final CUfunction moeGroup;
    final CUfunction moeGather;
    final CUfunction moeCombine;
    final CUfunction roundQ8k;
    final CUfunction quantizeQ8kRows;
    final CUfunction profileDelay;

    /** Loads the module into the current context. */
    Kernels(int major, String device) {
        String resource = ptxResource(major);
        byte[] ptx = readPtx(resource);
        module = new CUmodule();
        int result = JCudaDriver.cuModuleLoadData(module, ptx);
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException("loading the kernels " + resource + " on " + device + " failed: "
                    + CUresult.stringFor(result) + (result == CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                    ? " (the NVIDIA driver is older than the nvcc that made the PTX; update the driver)" : ""));
        }
        for (GgmlType t : FORMATS) {
            formats.put(t, format(t.name().toLowerCase(Locale.ROOT), Q8K_FORMATS.contains(t), MMQ_FORMATS.contains(t)));
        }
        for (GgmlType t : CudaBackend.PADDABLE) {
            padded.put(t, format(t.name().toLowerCase(Locale.ROOT) + "p", true, MMQ_FORMATS.contains(t)));
        }
        rmsNorm = function("rms_norm");
        addRmsNorm = function("add_rms_norm");
        addRmsNormRounded = function("add_rms_norm_rounded");
        roundRows = function("round_rows");
        rmsNormRope = function("rms_norm_rope");
        rope = function("rope");
        add = function("add_inplace");
        siluMul = function("silu_mul");
        storeKvF16 = function("store_kv_f16");
        storeKvF32 = function("store_kv_f32");
        normRopeStoreF16 = function("norm_rope_store_f16");
        normRopeStoreF32 = function("norm_rope_store_f32");
        attentionF16 = function("attention_f16");
        attentionF32 = function("attention_f32");
        attentionDecodeF16 = function("attention_decode_f16");
        attentionDecodeF32 = function("attention_decode_f32");
        attentionDecodeRoundedF16 = function("attention_decode_rounded_f16");
        attentionDecodeRoundedF32 = function("attention_decode_rounded_f32");
        attentionTiledF16 = function("attention_tiled_f16");
        attentionTiledF32 = function("attention_tiled_f32");
        routeTopK = function("route_topk");
        routeF32 = function("route_f32");
        routeF32OneWarp = function("route_f32_w1");
        moeGroup = function("moe_group");
        moeGather = function("moe_gather");
        moeCombine = function("moe_combine");
        roundQ8k = function("round_q8k");
        quantizeQ8kRows = function("quantize_q8k_rows");
        profileDelay = function("profile_delay");
    }

    /**
     * The PTX for a device of compute capability {@code major}.x: Hopper's own from 9.0 on, Ampere's below. Kept
     * gzipped (a fifth of its 6 MB), which keeps the repository and what a GPU machine is sent small.
     */
    static String ptxResource(int major) {
        return "/moe4j/kernels/cuda/moe4j.sm_" + (major >= 9 ? 90 : 80) + ".ptx.gz";
    }

    static byte[] readPtx(String resource) {
        try (InputStream in = Kernels.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new CudaException("the CUDA kernels " + resource + " are missing from the classpath");
            }
            byte[] text;
            try (InputStream ptx = new GZIPInputStream(in)) {
                text = ptx.readAllBytes();
            }
            byte[] z = new byte[text.length + 1]; // the driver reads PTX as a NUL-terminated string
            System.arraycopy(text, 0, z, 0, text.length);
            return z;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the CUDA kernels " + resource, e);
        }
    }

    /** The kernels whose names end in {@code s}. */
    private Format format(String s, boolean q8k, boolean mmq) {
        return new Format(function("mv_" + s), function("mv_pair_" + s), function("mv_combine_" + s),
                function("mm_" + s), function("rows_" + s), q8k ? function("mvq_" + s) : null,
                q8k ? function("mvq_multi_" + s) : null,
                q8k ? function("mvq_pair_" + s) : null,
                q8k ? new Combine(function("mvq_combine_" + s), function("mvq_combine_rounded_" + s)) : null,
                mmq ? function("mmq_" + s) : null,
                q8k ? new Rounded(function("mvq_rounded_" + s), function("mvq_multi_rounded_" + s),
                        function("mvq_pair_rounded_" + s), function("mvq_pair_rounded_o8_" + s)) : null);
    }

    /** The kernels that read {@code w} as it lies in device memory. */
    Format format(CudaWeight w) {
        if (w.padded()) {
            Format f = padded.get(w.format());
            if (f == null) {
                throw new IllegalStateException("no CUDA kernels for padded " + w.format());
            }
            return f;
        }
        return format(w.format());
    }

    private Format format(GgmlType type) {
        Format f = formats.get(type);
        if (f == null) {
            throw new IllegalStateException("no CUDA kernels for " + type);
        }
        return f;
    }

    /**
     * Whether the norms, the router and one-token attention ask L2 for what they read first before they wait for the
     * kernel before them ({@code c_prefetch} in moe4j.cu; the same results either way). The module's context must be
     * current.
     */
    void prefetch(boolean on) {
        CUdeviceptr flag = new CUdeviceptr();
        long[] bytes = new long[1];
        check(JCudaDriver.cuModuleGetGlobal(flag, bytes, module, "c_prefetch"),
                "finding c_prefetch (the PTX does not match this build of moe4j)");
        check(JCudaDriver.cuMemcpyHtoD(flag, Pointer.to(new int[] {on ? 1 : 0}), Integer.BYTES),
                "setting c_prefetch");
    }

    private CUfunction function(String name) {
        CUfunction f = new CUfunction();
        check(JCudaDriver.cuModuleGetFunction(f, module, name), "finding kernel " + name
                + " (the PTX does not match this build of moe4j)");
        return f;
    }

    void unload() {
        JCudaDriver.cuModuleUnload(module);
    }
}
