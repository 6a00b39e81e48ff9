package moe4j.engine.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * The rule that cuts text into words before BPE merges run inside each word, selected by the GGUF
 * key {@code tokenizer.ggml.pre}. Each rule is a hand-written scanner with exactly the semantics
 * of llama.cpp's scanner for the same regex; a general regex engine's Unicode classes differ in
 * small ways (marks, whitespace) that would change token boundaries.
 *
 * <p>Character classes: letter = general category L*, number = N*, whitespace = the fixed set
 * U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
 * U+3000. Everything else (marks, punctuation, symbols, unassigned) is "other".
 */
public enum PreTokenizer {

    /**
     * Qwen2/Qwen3: {@code (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
     * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+} with digits one per word.
     */
    QWEN2(false, "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"),

    /** Llama 3: the {@link #QWEN2} pattern with digits in groups of up to three ({@code \p{N}{1,3}}). */
    LLAMA3(true, "llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),

    /**
     * GPT-2: {@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+},
     * contractions case-sensitive.
     */
    GPT2(false, "gpt-2");

    private static final int LETTER = 1;
    private static final int NUMBER = 2;
    private static final int WHITESPACE = 4;
    /** Set for every in-range code point, so that "past the end" (0) differs from "other". */
    private static final int PRESENT = 8;

    private final boolean ignoreMerges;
    private final List<String> names;

    PreTokenizer(boolean ignoreMerges, String... names) {
        this.ignoreMerges = ignoreMerges;
        this.names = List.of(names);
    }

    /** The {@code tokenizer.ggml.pre} values that select this rule. */
    public List<String> ggufNames() {
        return names;
    }

    /**
     * True when a word that is itself a vocabulary entry is emitted whole without running merges
     * (llama.cpp's {@code ignore_merges}, set for the Llama 3 family).
     */
    boolean ignoreMerges() {
        return ignoreMerges;
    }

    /**
     * True when the model family adds BOS by default if the file does not say
     * ({@code tokenizer.ggml.add_bos_token} absent).
     */
    boolean addsBosByDefault() {
        return this == LLAMA3;
    }

    /** The rule for a {@code tokenizer.ggml.pre} value; throws listing the supported values otherwise. */
    public static PreTokenizer forGgufName(String name) {
        for (PreTokenizer p : values()) {
            if (p.names.contains(name)) {
                return p;
            }
        }
        List<String> all = new ArrayList<>();
        for (PreTokenizer p : values()) {
            all.addAll(p.names);
        }
        throw new IllegalArgumentException("pre-tokenizer '" + name + "' (tokenizer.ggml.pre) not supported yet; supported: "
                + String.join(", ", all));
    }

    /** Splits text into words (for inspection and tests; encoding uses the code-point form). */
    List<String> split(String text) {
        int[] cps = Tokenizer.codePoints(text, 0, text.length());
        List<String> words = new ArrayList<>();
        int[] start = {0};
        split(cps, cps.length, end -> {
            words.add(new String(cps, start[0], end - start[0]));
            start[0] = end;
        });
        return words;
    }

    /**
     * Splits {@code cps[0, length)} into words, reporting the exclusive end index of each word in
     * order (so the words are contiguous and cover the whole range).
     */
    void split(int[] cps, int length, IntConsumer wordEnd) {
        byte[] flags = new byte[length];
        for (int i = 0; i < length; i++) {
            flags[i] = (byte) classify(cps[i]);
        }
        Scan scan = new Scan(cps, flags, length);
        switch (this) {
            case QWEN2 -> scan.llamaStyle(1, wordEnd);
            case LLAMA3 -> scan.llamaStyle(3, wordEnd);
            case GPT2 -> scan.gpt2(wordEnd);
        }
    }

    static int classify(int cp) {
        if (isWhitespace(cp)) {
            return WHITESPACE | PRESENT;
        }
        return switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                 Character.MODIFIER_LETTER, Character.OTHER_LETTER -> LETTER | PRESENT;
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> NUMBER | PRESENT;
            default -> PRESENT;
        };
    }

    private static boolean isWhitespace(int cp) {
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
                || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F
                || cp == 0x205F || cp == 0x3000;
    }

    private static boolean isNewline(int cp) {
        return cp == '\r' || cp == '\n';
    }

    /** Only ASCII letters can complete a contraction, so ASCII lower-casing is the whole rule. */
    private static int asciiLower(int cp) {
        return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
    }

    /** One pass over a fragment; {@link #flag} answers 0 past the end, like llama.cpp. */
    private record Scan(int[] cps, byte[] flags, int end) {

        int flag(int pos) {
            return pos < end ? flags[pos] : 0;
        }

        /** Length of the contraction starting at {@code pos} ({@code 's}, {@code 're}, ...), or 0. */
        int contraction(int pos, boolean ignoreCase) {
            if (cps[pos] != '\'' || pos + 1 >= end) {
                return 0;
            }
            int n1 = ignoreCase ? asciiLower(cps[pos + 1]) : cps[pos + 1];
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                return 2;
            }
            if (pos + 2 >= end) {
                return 0;
            }
            int n2 = ignoreCase ? asciiLower(cps[pos + 2]) : cps[pos + 2];
            boolean two = (n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l');
            return two ? 3 : 0;
        }

        /** Qwen2 (maxDigits 1) and Llama 3 (maxDigits 3). */
        void llamaStyle(int maxDigits, IntConsumer wordEnd) {
            int pos = 0;
            while (pos < end) {
                int cp = cps[pos];
                int f = flags[pos];
                int contraction = contraction(pos, true);
                if (contraction > 0) {
                    pos += contraction;
                } else if (!isNewline(cp) && (f & NUMBER) == 0 && ((f & LETTER) != 0 || (flag(pos + 1) & LETTER) != 0)) {
                    // [^\r\n\p{L}\p{N}]?\p{L}+
                    pos++;
                    while ((flag(pos) & LETTER) != 0) {
                        pos++;
                    }
                } else if ((f & NUMBER) != 0) {
                    int first = pos;
                    while (pos - first < maxDigits && (flag(pos) & NUMBER) != 0) {
                        pos++;
                    }
                } else if (((cp == ' ' ? flag(pos + 1) : f) & (WHITESPACE | LETTER | NUMBER)) == 0) {
                    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (a lone trailing space also lands here, as one word)
                    if (cp == ' ') {
                        pos++;
                    }
                    while ((flag(pos) & (WHITESPACE | LETTER | NUMBER | PRESENT)) == PRESENT) {
                        pos++;
                    }
                    while (pos < end && isNewline(cps[pos])) {
                        pos++;
                    }
                } else {
                    pos = whitespaceRun(pos, true);
                }
                wordEnd.accept(pos);
            }
        }

        void gpt2(IntConsumer wordEnd) {
            int pos = 0;
            while (pos < end) {
                int cp = cps[pos];
                int contraction = contraction(pos, false);
                int f = cp == ' ' ? flag(pos + 1) : flags[pos];
                if (contraction > 0) {
                    pos += contraction;
                } else if ((f & (LETTER | NUMBER)) != 0) {
                    // ' ?\p{L}+' or ' ?\p{N}+'
                    int kind = f & (LETTER | NUMBER);
                    if (cp == ' ') {
                        pos++;
                    }
                    while ((flag(pos) & kind) != 0) {
                        pos++;
                    }
                } else if ((f & (WHITESPACE | PRESENT)) == PRESENT) {
                    // ' ?[^\s\p{L}\p{N}]+'
                    if (cp == ' ') {
                        pos++;
                    }
                    while ((flag(pos) & (WHITESPACE | LETTER | NUMBER | PRESENT)) == PRESENT) {
                        pos++;
                    }
                } else {
                    pos = whitespaceRun(pos, false);
                }
                wordEnd.accept(pos);
            }
        }

        /**
         * End of the word for the whitespace run at {@code pos}: through its last CR/LF when
         * {@code newlineRule} ({@code \s*[\r\n]+}); else all but its last code point when a
         * non-space follows ({@code \s+(?!\S)}), so that code point can prefix the next word;
         * else the whole run.
         */
        int whitespaceRun(int pos, boolean newlineRule) {
            int runEnd = pos;
            int afterLastNewline = -1;
            while ((flag(runEnd) & WHITESPACE) != 0) {
                if (isNewline(cps[runEnd])) {
                    afterLastNewline = runEnd + 1;
                }
                runEnd++;
            }
            if (newlineRule && afterLastNewline >= 0) {
                return afterLastNewline;
            }
            if (runEnd - pos > 1 && runEnd < end) {
                return runEnd - 1;
            }
            return Math.max(runEnd, pos + 1);
        }
    }
}
