package moe4j.engine.testmodel;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufWriter;
import moe4j.gguf.TensorSource;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Writes complete, loadable Qwen3 / Qwen3-MoE GGUF files with random weights: the metadata llama.cpp's
 * converter writes (same keys, same value types), a synthetic byte-level BPE vocabulary
 * ({@link TestVocabulary}) and every tensor of the architecture, typed per {@link TensorMix}.
 *
 * <p>Weights: matrices are zero-mean noise with standard deviation {@code 1/sqrt(n_in)}; norm gains are
 * {@code 1 +- 0.05}. Quantized tensors up to {@value #QUANTIZE_LIMIT} elements are quantized from such floats;
 * larger ones (the experts and embeddings of full-size models) get random valid blocks directly, which is
 * orders of magnitude faster. Tensors are produced straight into the output file, so the file size is not
 * limited by the heap. The result depends only on the shape, the mix and the seed.
 */
public final class TestModelGenerator {

    /** Above this many elements a quantized tensor gets random blocks instead of quantized random floats. */
    public static final long QUANTIZE_LIMIT = 1L << 22;

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final float NORM_NOISE = 0.05f;

    /** Told after each tensor is written; {@code bytesDone} counts tensor data only. */
    @FunctionalInterface
    public interface Progress {
        Progress NONE = (name, done, total) -> { };

        void tensorWritten(String name, long bytesDone, long bytesTotal);
    }

    /** One tensor the generator writes. */
    public record TensorPlan(String name, GgmlType type, long[] dims) {
        public TensorPlan {
            dims = dims.clone();
        }

        @Override
        public long[] dims() { return dims.clone(); }

        public long elementCount() {
            return Arrays.stream(dims).reduce(1, Math::multiplyExact);
        }

        public long byteSize() { return type.bytesFor(elementCount()); }
    }

    private TestModelGenerator() {}

    /** The tensors of a model of this shape, in the order the converter writes them, with their types. */
    public static List<TensorPlan> plan(ModelShape shape, TensorMix mix) {
        long embd = shape.embd();
        long vocab = shape.vocab();
        List<TensorPlan> plan = new ArrayList<>();
        add(plan, shape, mix, "token_embd.weight", embd, vocab);
        for (int i = 0; i < shape.layers(); i++) {
            String p = "blk." + i + ".";
            add(plan, shape, mix, p + "attn_norm.weight", embd);
            add(plan, shape, mix, p + "attn_q.weight", embd, shape.qDim());
            add(plan, shape, mix, p + "attn_k.weight", embd, shape.kvDim());
            add(plan, shape, mix, p + "attn_v.weight", embd, shape.kvDim());
            add(plan, shape, mix, p + "attn_output.weight", shape.qDim(), embd);
            add(plan, shape, mix, p + "attn_q_norm.weight", shape.headDim());
            add(plan, shape, mix, p + "attn_k_norm.weight", shape.headDim());
            add(plan, shape, mix, p + "ffn_norm.weight", embd);
            if (shape.isMoe()) {
                long ff = shape.expertFfn();
                long n = shape.experts();
                add(plan, shape, mix, p + "ffn_gate_inp.weight", embd, n);
                add(plan, shape, mix, p + "ffn_gate_exps.weight", embd, ff, n);
                add(plan, shape, mix, p + "ffn_up_exps.weight", embd, ff, n);
                add(plan, shape, mix, p + "ffn_down_exps.weight", ff, embd, n);
            } else {
                add(plan, shape, mix, p + "ffn_gate.weight", embd, shape.ffn());
                add(plan, shape, mix, p + "ffn_up.weight", embd, shape.ffn());
                add(plan, shape, mix, p + "ffn_down.weight", shape.ffn(), embd);
            }
        }
        add(plan, shape, mix, "output_norm.weight", embd);
        if (!shape.tiedEmbeddings()) {
            add(plan, shape, mix, "output.weight", embd, vocab);
        }
        return plan;
    }

    private static void add(List<TensorPlan> plan, ModelShape shape, TensorMix mix, String name, long... dims) {
        plan.add(new TensorPlan(name, mix.typeFor(name, dims, shape), dims));
    }

    /** The model's display name ({@code general.name}). */
    public static String modelName(ModelShape shape, TensorMix mix, long seed) {
        return "moe4j-random-" + shape.arch() + "-e" + shape.embd() + "-l" + shape.layers() + "-" + mix + "-s" + seed;
    }

    public static void write(ModelShape shape, TensorMix mix, long seed, Path out) throws IOException {
        write(shape, mix, seed, out, Progress.NONE);
    }

    /** Writes the model to {@code out} (replacing it), telling {@code progress} after each tensor. */
    public static void write(ModelShape shape, TensorMix mix, long seed, Path out, Progress progress)
            throws IOException {
        List<TensorPlan> plan = plan(shape, mix);
        requireImplemented(plan, mix);
        GgufWriter w = new GgufWriter();
        putMetadata(w, shape, mix, seed);
        long total = plan.stream().mapToLong(TensorPlan::byteSize).sum();
        long[] done = {0};
        for (TensorPlan t : plan) {
            TensorSource fill = tensorSource(t, seed);
            w.addTensor(t.name(), t.type(), t.dims(), target -> {
                fill.fill(target);
                done[0] += t.byteSize();
                progress.tensorWritten(t.name(), done[0], total);
            });
        }
        w.write(out);
    }

    /** Fails before anything is produced when a tensor's type has no implementation. */
    static void requireImplemented(List<TensorPlan> plan, TensorMix mix) {
        if (mix.isQuantized()) {
            plan.forEach(t -> QuantFormats.of(t.type()));
        }
    }

    /** The metadata of the model: shared by the file and the in-memory {@link SyntheticModel}. */
    static void putMetadata(GgufWriter w, ModelShape s, TensorMix mix, long seed) {
        String a = s.arch();
        w.putString("general.architecture", a);
        w.putString("general.name", modelName(s, mix, seed));
        w.putUInt32(a + ".block_count", s.layers());
        w.putUInt32(a + ".context_length", s.context());
        w.putUInt32(a + ".embedding_length", s.embd());
        w.putUInt32(a + ".feed_forward_length", s.ffn());
        w.putUInt32(a + ".attention.head_count", s.heads());
        w.putUInt32(a + ".attention.head_count_kv", s.kvHeads());
        w.putUInt32(a + ".attention.key_length", s.headDim());
        w.putUInt32(a + ".attention.value_length", s.headDim());
        w.putFloat32(a + ".rope.freq_base", s.ropeBase());
        w.putFloat32(a + ".attention.layer_norm_rms_epsilon", s.rmsEps());
        if (s.isMoe()) {
            w.putUInt32(a + ".expert_count", s.experts());
            w.putUInt32(a + ".expert_used_count", s.expertsUsed());
            w.putUInt32(a + ".expert_feed_forward_length", s.expertFfn());
        }
        TestVocabulary vocab = TestVocabulary.build(s.vocab());
        w.putString("tokenizer.ggml.model", "gpt2");
        w.putString("tokenizer.ggml.pre", "qwen2");
        w.putStringArray("tokenizer.ggml.tokens", vocab.tokens());
        w.putInt32Array("tokenizer.ggml.token_type", vocab.tokenTypes());
        w.putStringArray("tokenizer.ggml.merges", vocab.merges());
        w.putUInt32("tokenizer.ggml.bos_token_id", vocab.endOfTextId());
        w.putUInt32("tokenizer.ggml.eos_token_id", vocab.imEndId());
        w.putUInt32("tokenizer.ggml.padding_token_id", vocab.endOfTextId());
        w.putBool("tokenizer.ggml.add_bos_token", false);
        w.putString("tokenizer.chat_template", TestVocabulary.CHAT_TEMPLATE);
        if (mix.isQuantized()) {
            w.putUInt32("general.quantization_version", 2);
        }
        w.putUInt32("general.file_type", mix.fileType());
    }

    /** The bytes of one tensor: a pure function of the seed and the tensor's name, type and shape. */
    static TensorSource tensorSource(TensorPlan t, long seed) {
        boolean norm = t.dims().length == 1;
        long[] dims = t.dims();
        int rowLength = Math.toIntExact(dims[0]);
        float scale = norm ? NORM_NOISE : (float) Math.sqrt(6.0 / rowLength);   // u1 - u2 has variance 1/6
        float center = norm ? 1f : 0f;
        return target -> {
            RandomGenerator rnd = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ t.name().hashCode());
            switch (t.type()) {
                case F32, F16, BF16 -> {
                    int elementBytes = t.type().blockBytes();
                    for (long i = 0, n = t.elementCount(); i < n; i++) {
                        float v = center + scale * (rnd.nextFloat() - rnd.nextFloat());
                        long at = i * elementBytes;
                        switch (t.type()) {
                            case F32 -> target.set(F32_LE, at, v);
                            case F16 -> target.set(I16_LE, at, Float.floatToFloat16(v));
                            default -> target.set(I16_LE, at, toBf16(v));
                        }
                    }
                }
                default -> {
                    QuantFormat format = QuantFormats.of(t.type());
                    if (format.canQuantize() && t.elementCount() <= QUANTIZE_LIMIT) {
                        float[] row = new float[rowLength];
                        long rowBytes = t.type().bytesFor(rowLength);
                        for (long r = 0, rows = t.elementCount() / rowLength; r < rows; r++) {
                            for (int i = 0; i < rowLength; i++) {
                                row[i] = center + scale * (rnd.nextFloat() - rnd.nextFloat());
                            }
                            format.quantize(row, 0, rowLength, target, r * rowBytes);
                        }
                    } else {
                        format.randomBlocks(rnd, target, 0, t.elementCount() / t.type().blockSize());
                    }
                }
            }
        };
    }

    /** Round-to-nearest-even truncation of an f32 to its upper 16 bits (values here are finite). */
    private static short toBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }
}
