package moe4j.engine.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;

/**
 * A hand-made byte-level vocabulary for tests: ids 0..255 are the 256 single-byte symbols with
 * id = byte value, then whatever the test adds.
 */
final class TinyVocab {

    final List<String> tokens = new ArrayList<>();
    final List<TokenType> types = new ArrayList<>();
    final List<String> merges = new ArrayList<>();

    TinyVocab() {
        for (int b = 0; b < 256; b++) {
            add(String.valueOf(ByteLevel.charOf(b)), TokenType.NORMAL);
        }
    }

    /** Adds the merge rule "left right" (next rank) and its result as a token; returns the result's id. */
    int merge(String left, String right) {
        mergeWithoutToken(left, right);
        int id = tokens.indexOf(left + right);
        return id >= 0 ? id : add(left + right, TokenType.NORMAL);
    }

    /** Adds only the merge rule, so its result is not a vocabulary entry. */
    void mergeWithoutToken(String left, String right) {
        merges.add(left + " " + right);
    }

    int add(String text, TokenType type) {
        tokens.add(text);
        types.add(type);
        return tokens.size() - 1;
    }

    int id(String text) {
        int id = tokens.indexOf(text);
        if (id < 0) {
            throw new IllegalArgumentException("no token " + text);
        }
        return id;
    }

    TokenizerSpec spec(PreTokenizer pre) {
        return new TokenizerSpec(tokens, types, merges, pre, OptionalInt.empty(), OptionalInt.empty(),
                OptionalInt.empty(), false, false);
    }

    Tokenizer build() {
        return build(PreTokenizer.QWEN2);
    }

    Tokenizer build(PreTokenizer pre) {
        return Tokenizer.create(spec(pre));
    }
}
