package moe4j.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufValueType;

/**
 * What {@code moe4j info} reports about a GGUF model, read generically from the {@code {arch}.*} keys, the
 * tokenizer keys and the tensor table.
 *
 * @param hyperparameters JSON key -> value ({@link Long}, {@link Double}, a {@link List} of Long when a
 *                        per-layer array is not uniform, or null when the file does not say)
 * @param typeCounts      tensors per storage type, in ggml id order
 * @param typeBytes       tensor bytes per storage type, in ggml id order
 */
record ModelSummary(List<Path> files, List<Long> fileSizes, long fileSize, int ggufVersion, long alignment, int metadataCount,
                    String architecture, String name, SequencedMap<String, Object> hyperparameters,
                    Integer vocabSize, String tokenizerModel, String tokenizerPre, List<GgufTensor> tensors,
                    long parameterCount, long tensorBytes, Map<GgmlType, Integer> typeCounts,
                    Map<GgmlType, Long> typeBytes) {

    /** One hyperparameter: JSON key, label for the text output, key suffix after {@code {arch}.}. */
    record Hyperparameter(String jsonKey, String label, String keySuffix) {}

    static final List<Hyperparameter> HYPERPARAMETERS = List.of(
            new Hyperparameter("block_count", "layers", "block_count"),
            new Hyperparameter("embedding_length", "embedding size", "embedding_length"),
            new Hyperparameter("head_count", "heads", "attention.head_count"),
            new Hyperparameter("head_count_kv", "kv heads", "attention.head_count_kv"),
            new Hyperparameter("key_length", "key head dim", "attention.key_length"),
            new Hyperparameter("value_length", "value head dim", "attention.value_length"),
            new Hyperparameter("expert_count", "experts", "expert_count"),
            new Hyperparameter("expert_used_count", "experts used", "expert_used_count"),
            new Hyperparameter("expert_feed_forward_length", "expert ffn size", "expert_feed_forward_length"),
            new Hyperparameter("feed_forward_length", "ffn size", "feed_forward_length"),
            new Hyperparameter("context_length", "context length", "context_length"),
            new Hyperparameter("rope_freq_base", "rope base", "rope.freq_base"),
            new Hyperparameter("layer_norm_rms_epsilon", "rms eps", "attention.layer_norm_rms_epsilon"));

    static ModelSummary of(GgufFile file) throws IOException {
        GgufMetadata md = file.metadata();
        String arch = md.getString("general.architecture", null);
        SequencedMap<String, Object> hp = new LinkedHashMap<>();
        for (Hyperparameter h : HYPERPARAMETERS) {
            hp.put(h.jsonKey(), arch == null ? null : value(md, arch + "." + h.keySuffix()));
        }
        applyLlamaCppDefaults(hp);

        long params = 0;
        long bytes = 0;
        Map<GgmlType, Integer> counts = new EnumMap<>(GgmlType.class);
        Map<GgmlType, Long> typeBytes = new EnumMap<>(GgmlType.class);
        for (GgufTensor t : file.tensors()) {
            params = Math.addExact(params, t.elementCount());
            bytes = Math.addExact(bytes, t.byteSize());
            counts.merge(t.type(), 1, Integer::sum);
            typeBytes.merge(t.type(), t.byteSize(), Long::sum);
        }

        Integer vocab = md.contains("tokenizer.ggml.tokens") ? md.arrayLength("tokenizer.ggml.tokens")
                : file.findTensor("token_embd.weight").map(t -> Math.toIntExact(t.shape()[1])).orElse(null);
        List<Long> sizes = new ArrayList<>();
        for (Path p : file.paths()) {
            sizes.add(Files.size(p));
        }
        return new ModelSummary(file.paths(), sizes, file.fileBytes(), file.version(), file.alignment(), md.size(), arch,
                md.getString("general.name", null), hp, vocab, md.getString("tokenizer.ggml.model", null),
                md.getString("tokenizer.ggml.pre", null), file.tensors(), params, bytes, counts, typeBytes);
    }

    /** A scalar as Long or Double; a per-layer array as one value when uniform, else as a list. */
    private static Object value(GgufMetadata md, String key) {
        if (!md.contains(key)) {
            return null;
        }
        GgufValueType type = md.type(key);
        if (type == GgufValueType.ARRAY) {
            List<?> values = md.getArray(key).elementType().isFloat()
                    ? Arrays.stream(md.getDoubleArray(key)).boxed().toList()
                    : Arrays.stream(md.getLongArray(key)).boxed().toList();
            return values.stream().distinct().count() == 1 ? values.getFirst() : values;
        }
        if (type == GgufValueType.FLOAT32) {
            return Double.parseDouble(Float.toString(md.getFloat(key)));   // 1e-6f reads as 1.0E-6, not 9.99e-7
        }
        return type.isFloat() ? (Object) md.getDouble(key) : (Object) md.getLong(key);
    }

    /** Values llama.cpp derives when the file does not state them: KV heads = heads, head dim = embd / heads. */
    private static void applyLlamaCppDefaults(Map<String, Object> hp) {
        hp.putIfAbsent("head_count_kv", hp.get("head_count"));
        if (hp.get("embedding_length") instanceof Long embd && hp.get("head_count") instanceof Long heads && heads > 0) {
            hp.putIfAbsent("key_length", embd / heads);
            hp.putIfAbsent("value_length", embd / heads);
        }
    }

    /** Storage cost of the weights: 8 * tensor bytes / parameters. */
    double bitsPerWeight() {
        return parameterCount == 0 ? 0 : 8.0 * tensorBytes / parameterCount;
    }

    /** The JSON document {@code info --json} prints (keys in this order). */
    SequencedMap<String, Object> toJson(boolean withTensors) {
        SequencedMap<String, Object> j = new LinkedHashMap<>();
        j.put("architecture", architecture);
        j.put("name", name);
        j.putAll(hyperparameters);
        j.put("vocab_size", vocabSize);
        j.put("tokenizer_model", tokenizerModel);
        j.put("tokenizer_pre", tokenizerPre);
        j.put("tensor_count", tensors.size());
        j.put("parameter_count", parameterCount);
        j.put("tensor_bytes", tensorBytes);
        j.put("bits_per_weight", bitsPerWeight());
        Map<String, Object> counts = new LinkedHashMap<>();
        typeCounts.forEach((t, n) -> counts.put(t.toString(), n));
        j.put("tensor_types", counts);
        Map<String, Object> bytes = new LinkedHashMap<>();
        typeBytes.forEach((t, n) -> bytes.put(t.toString(), n));
        j.put("tensor_type_bytes", bytes);
        j.put("file_size", fileSize);
        j.put("files", files.stream().map(Path::toString).toList());
        j.put("file_sizes", fileSizes);
        j.put("gguf_version", ggufVersion);
        j.put("alignment", alignment);
        j.put("metadata_count", metadataCount);
        if (withTensors) {
            List<Object> list = new ArrayList<>(tensors.size());
            for (GgufTensor t : tensors) {
                Map<String, Object> e = new LinkedHashMap<>();
                e.put("name", t.name());
                e.put("type", t.type().toString());
                e.put("shape", Arrays.stream(t.dims()).boxed().toList());
                e.put("offset", t.fileOffset());
                e.put("bytes", t.byteSize());
                if (files.size() > 1) {
                    e.put("file", t.file().toString());
                }
                list.add(e);
            }
            j.put("tensors", list);
        }
        return j;
    }
}
