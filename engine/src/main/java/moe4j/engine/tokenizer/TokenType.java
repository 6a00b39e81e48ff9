package moe4j.engine.tokenizer;

/**
 * What a vocabulary entry is, as stored in {@code tokenizer.ggml.token_type}. It decides whether
 * the entry is matched literally in input text and whether its text is printed when decoding.
 */
public enum TokenType {
    /** Code 0: no type recorded; never printed. */
    UNDEFINED,
    /** Code 1: an ordinary byte-level BPE token. */
    NORMAL,
    /** Code 2: the unknown-token placeholder; treated like {@link #CONTROL}. */
    UNKNOWN,
    /** Code 3: a special token (e.g. {@code <|im_end|>}); parsed from text and printed only on request. */
    CONTROL,
    /** Code 4: an added token (e.g. {@code <think>}); always matched literally and always printed. */
    USER_DEFINED,
    /** Code 5: a padding slot that no text produces; never printed. */
    UNUSED,
    /** Code 6: a single raw byte written as {@code <0xXX>}. */
    BYTE;

    private static final TokenType[] BY_CODE = values();

    /** The type for a GGUF code; throws naming the token when the code is not one of 0..6. */
    public static TokenType fromCode(int code, int tokenId) {
        if (code < 0 || code >= BY_CODE.length) {
            throw new IllegalArgumentException(
                    "token " + tokenId + " has invalid token type " + code + " (expected 0..6)");
        }
        return BY_CODE[code];
    }

    /** True for the types that are found literally in text before pre-tokenization. */
    boolean isSpecial() {
        return this == CONTROL || this == USER_DEFINED || this == UNKNOWN;
    }

    /** True for the types that are found in text and printed only when special parsing/rendering is asked. */
    boolean isControlLike() {
        return this == CONTROL || this == UNKNOWN;
    }
}
