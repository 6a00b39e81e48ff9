package moe4j.engine.embedding;

import java.util.Locale;

import moe4j.engine.Model;
import moe4j.engine.UnsupportedModelException;
import moe4j.gguf.GgufMetadata;

/**
 * How the hidden states of a text's tokens become one embedding: llama.cpp's pooling types, as a GGUF
 * file declares them in {@code {arch}.pooling_type}.
 */
public enum Pooling {
    /** No pooling: one vector per token. */
    NONE(0),
    /** The average over all tokens. */
    MEAN(1),
    /** The first token's vector. */
    CLS(2),
    /** The last token's vector (Qwen3-Embedding; the text should end with the EOS the tokenizer appends). */
    LAST(3);

    /** {@code pooling_type} of rerankers, which score a query-document pair instead of embedding a text. */
    private static final int RANK = 4;

    private final int code;

    Pooling(int code) {
        this.code = code;
    }

    /** The value of {@code {arch}.pooling_type}. */
    public int code() { return code; }

    /** Lower-case name, e.g. {@code last}. */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * The pooling {@code model} declares ({@code {arch}.pooling_type}); {@link #NONE} when the key is absent,
     * as for language models.
     *
     * @throws UnsupportedModelException for a reranker (type 4) or an unknown type
     */
    public static Pooling declaredBy(Model model) {
        GgufMetadata md = model.file().metadata();
        String key = model.config().architecture() + ".pooling_type";
        if (!md.contains(key)) {
            return NONE;
        }
        int code = md.getInt(key);
        for (Pooling p : values()) {
            if (p.code == code) {
                return p;
            }
        }
        throw new UnsupportedModelException(key + " = " + code + (code == RANK
                ? ": rerankers (rank pooling) are not supported" : ": unknown pooling type (known: 0 none, 1 mean,"
                + " 2 cls, 3 last)") + " (in " + model.path() + ")");
    }
}
