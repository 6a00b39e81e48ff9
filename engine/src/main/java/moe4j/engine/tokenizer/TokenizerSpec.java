package moe4j.engine.tokenizer;

import java.util.List;
import java.util.Objects;
import java.util.OptionalInt;

/**
 * Everything a byte-level BPE tokenizer is built from, independent of where it was read.
 * {@link Tokenizer#fromGguf} fills it from GGUF metadata; tests and other formats can fill it
 * directly.
 *
 * @param tokens       vocabulary texts, index = token id (byte-level strings for NORMAL tokens)
 * @param types        one type per token
 * @param merges       {@code "left right"} merge rules, rank = index
 * @param preTokenizer how text is cut into words before merging
 * @param bos          beginning-of-sequence id, if the model has one
 * @param eos          end-of-sequence id, if the model has one
 * @param eot          end-of-turn id, if recorded (it ends generation like EOS)
 * @param addBos       prepend BOS when encoding with special tokens
 * @param addEos       append EOS when encoding with special tokens
 */
public record TokenizerSpec(List<String> tokens, List<TokenType> types, List<String> merges,
                            PreTokenizer preTokenizer, OptionalInt bos, OptionalInt eos, OptionalInt eot,
                            boolean addBos, boolean addEos) {

    public TokenizerSpec {
        Objects.requireNonNull(tokens, "tokens");
        Objects.requireNonNull(types, "types");
        Objects.requireNonNull(merges, "merges");
        Objects.requireNonNull(preTokenizer, "preTokenizer");
        Objects.requireNonNull(bos, "bos");
        Objects.requireNonNull(eos, "eos");
        Objects.requireNonNull(eot, "eot");
        if (tokens.size() != types.size()) {
            throw new IllegalArgumentException("vocabulary has " + tokens.size() + " tokens but " + types.size()
                    + " token types (tokenizer.ggml.token_type)");
        }
    }
}
