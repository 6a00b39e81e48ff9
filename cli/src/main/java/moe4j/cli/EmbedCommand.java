package moe4j.cli;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.Model;
import moe4j.engine.embedding.Embedder;
import moe4j.engine.embedding.EmbeddingOptions;
import moe4j.engine.embedding.Pooling;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe4j embed}: the embedding of a text (or of each line of a file), printed, as JSON, or written in
 * the conformance fixtures' format.
 */
@Command(name = "embed", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Computes text embeddings: the final-norm hidden states of the text's tokens, pooled as the"
                + " model declares (<arch>.pooling_type) or as --pooling says, and L2-normalized.",
                "Texts are tokenized as by tokenize (special tokens recognized, BOS/EOS as the model asks)."
                + " Without --json or --out a short preview of each vector is printed."})
final class EmbedCommand implements Callable<Integer> {

    /** Values shown at each end of a vector in the preview. */
    private static final int PREVIEW = 3;

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @ArgGroup(exclusive = true, multiplicity = "1")
    private Input input;

    /** One text ({@code -p}/{@code -f}) or one text per line ({@code --input}). */
    static final class Input {
        @ArgGroup(exclusive = true, multiplicity = "1")
        PromptSource single;

        @Option(names = "--input", paramLabel = "LINES", required = true,
                description = "embed each line of a UTF-8 file (empty lines are skipped)")
        Path lines;
    }

    @Option(names = {"-o", "--out"}, paramLabel = "OUT.bin",
            description = "write the embedding of the one text in the format of the llama.cpp reference files:"
                    + " little-endian int32 n_tokens, int32 dim, int32 tokens[n_tokens], float32 embedding[dim]"
                    + " (with --pooling none: float32[n_tokens][dim])")
    private Path output;

    @Option(names = "--json", description = "print {\"model\", \"pooling\", \"normalized\", \"dimension\","
            + " \"data\": [{\"index\", \"tokens\", \"embedding\"}]} (embedding: a list per token with --pooling none)")
    private boolean json;

    @Option(names = "--pooling", paramLabel = "TYPE",
            description = "none, mean, cls or last (default: the model's; none gives a vector per token)")
    private Pooling pooling;

    @Option(names = "--no-normalize", description = "keep the raw pooled vectors (default: unit L2 length)")
    private boolean noNormalize;

    @Option(names = "--instruction", paramLabel = "TASK",
            description = "embed as a Qwen3-Embedding query: \"Instruct: TASK\\nQuery:\" before each text")
    private String instruction;

    @Option(names = "--prefix", paramLabel = "TEXT", description = "text put before each text")
    private String prefix;

    @Mixin
    private ModelOptions modelOptions;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        Path path = modelOptions.requireModel(cl);
        if (instruction != null && prefix != null) {
            throw new CommandLine.ParameterException(cl, "--instruction and --prefix cannot be combined");
        }
        List<String> texts = input.lines != null ? readLines(input.lines) : List.of(input.single.read());
        if (texts.isEmpty()) {
            throw new IllegalArgumentException(input.lines + " holds no text (only empty lines)");
        }
        if (output != null && texts.size() != 1) {
            throw new CommandLine.ParameterException(cl, "--out writes one text; " + input.lines + " holds "
                    + texts.size() + " (use --json for several)");
        }
        EmbeddingOptions options = EmbeddingOptions.defaults().withNormalize(!noNormalize);
        if (pooling != null) {
            options = options.withPooling(pooling);
        }
        if (instruction != null) {
            options = options.withInstruction(instruction);
        } else if (prefix != null) {
            options = options.withPrefix(prefix);
        }
        PrintWriter err = cl.getErr();
        try (Model model = ModelLoader.load(path, modelOptions, cl); Embedder embedder = Embedder.create(model, options)) {
            List<int[]> tokens = new ArrayList<>(texts.size());
            for (String text : texts) {
                tokens.add(embedder.tokenize(text));
            }
            long start = System.nanoTime();
            List<float[][]> vectors = embed(embedder, tokens);
            double seconds = (System.nanoTime() - start) / 1e9;
            long tokenCount = tokens.stream().mapToLong(t -> t.length).sum();
            err.printf(Locale.ROOT, "embedded %d text%s (%d tokens) in %.2f s: pooling %s, dimension %d, %s%n",
                    texts.size(), texts.size() == 1 ? "" : "s", tokenCount, seconds, embedder.pooling().label(),
                    embedder.dimension(), options.normalize() ? "L2-normalized" : "not normalized");
            if (output != null) {
                write(output, tokens.getFirst(), vectors.getFirst());
                err.println("wrote " + output);
            }
            err.flush();
            PrintWriter out = cl.getOut();
            if (json) {
                out.println(new ObjectMapper().writeValueAsString(toJson(path, embedder, tokens, vectors)));
            } else if (output == null) {
                preview(out, tokens, vectors);
            }
            out.flush();
        }
        return 0;
    }

    /** Each text's vectors: one pooled row, or one row per token without pooling. */
    private static List<float[][]> embed(Embedder embedder, List<int[]> tokens) {
        List<float[][]> vectors = new ArrayList<>(tokens.size());
        if (embedder.pooling() == Pooling.NONE) {
            for (int[] t : tokens) {
                vectors.add(embedder.tokenEmbeddings(t));
            }
        } else {
            for (float[] v : embedder.embedAllTokens(tokens)) {
                vectors.add(new float[][] {v});
            }
        }
        return vectors;
    }

    private static List<String> readLines(Path file) throws IOException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(Files.readAllBytes(file))).toString();
        } catch (CharacterCodingException e) {
            throw new IOException(file + " is not UTF-8 text", e);
        }
        return text.lines().filter(l -> !l.isEmpty()).toList();
    }

    /** The fixtures' format; a failed write leaves no partial file. */
    private static void write(Path file, int[] tokens, float[][] rows) throws IOException {
        int dim = rows[0].length;
        ByteBuffer b = ByteBuffer.allocate(8 + 4 * tokens.length + 4 * rows.length * dim).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(tokens.length).putInt(dim);
        for (int t : tokens) {
            b.putInt(t);
        }
        for (float[] row : rows) {
            for (float v : row) {
                b.putFloat(v);
            }
        }
        boolean done = false;
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(b.array());
            done = true;
        } finally {
            if (!done) {
                Files.deleteIfExists(file);
            }
        }
    }

    private static Map<String, Object> toJson(Path model, Embedder embedder, List<int[]> tokens, List<float[][]> vectors) {
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("model", model.getFileName().toString());
        root.put("pooling", embedder.pooling().label());
        root.put("normalized", embedder.options().normalize());
        root.put("dimension", embedder.dimension());
        List<Map<String, Object>> data = new ArrayList<>();
        for (int i = 0; i < tokens.size(); i++) {
            Map<String, Object> item = new LinkedHashMap<>();
            item.put("index", i);
            item.put("tokens", tokens.get(i).length);
            item.put("embedding", embedder.pooling() == Pooling.NONE ? vectors.get(i) : vectors.get(i)[0]);
            data.add(item);
        }
        root.put("data", data);
        return root;
    }

    private static void preview(PrintWriter out, List<int[]> tokens, List<float[][]> vectors) {
        for (int i = 0; i < tokens.size(); i++) {
            float[][] rows = vectors.get(i);
            for (int r = 0; r < rows.length; r++) {
                String label = rows.length == 1 ? "text " + i + " (" + tokens.get(i).length + " tokens)"
                        : "text " + i + " token " + r + " (id " + tokens.get(i)[r] + ")";
                out.println(label + ": " + abbreviate(rows[r]));
            }
        }
    }

    /** {@code [a, b, c, ..., x, y, z]}, with the vector's length. */
    private static String abbreviate(float[] v) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < v.length; i++) {
            if (v.length > 2 * PREVIEW && i == PREVIEW) {
                s.append("..., ");
                i = v.length - PREVIEW;
            }
            s.append(String.format(Locale.ROOT, "%.6f", v[i])).append(i + 1 < v.length ? ", " : "");
        }
        return s.append("] (").append(v.length).append(" values)").toString();
    }
}
