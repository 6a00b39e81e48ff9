package moe4j.engine.testmodel;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A synthetic Qwen-style byte-level BPE vocabulary: the 256 byte symbols (GPT-2 byte-to-unicode map, in
 * GPT-2's order, so {@code !} is 0, {@code Ċ} 198 and {@code Ġ} 220), then tokens made by merges learned
 * from a small built-in English text, then filler merges when a larger vocabulary is asked for, and last the
 * three ChatML control tokens. Deterministic: the same size always gives the same vocabulary.
 *
 * @param tokens     token texts (byte-level encoded), index = id
 * @param tokenTypes GGUF token types: {@link #NORMAL} or {@link #CONTROL}
 * @param merges     BPE merges {@code "left right"}, rank = index
 */
public record TestVocabulary(List<String> tokens, int[] tokenTypes, List<String> merges) {

    public static final int NORMAL = 1;
    public static final int CONTROL = 3;
    public static final String END_OF_TEXT = "<|endoftext|>";
    public static final String IM_START = "<|im_start|>";
    public static final String IM_END = "<|im_end|>";

    /** A ChatML template in the Jinja dialect llama.cpp and HF use. */
    public static final String CHAT_TEMPLATE = """
            {%- for message in messages %}
                {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
            {%- endfor %}
            {%- if add_generation_prompt %}
                {{- '<|im_start|>assistant\\n' }}
            {%- endif %}
            """;

    /** Text the merges are learned from; its frequent pairs become the first merged tokens. */
    private static final String CORPUS = """
            The engine reads a model file, maps its weights into memory and runs one token at a time through
            every layer. Each layer first normalizes the hidden state, then computes attention over all the
            tokens seen so far, and then sends the result through a small set of experts chosen by a router.
            Only the chosen experts are computed, which is why a mixture of experts model with thirty billion
            parameters can run about as fast as a dense model with three billion.
            The router scores every expert for the current token, keeps the best eight of them, and mixes
            their outputs with weights that sum to one. When the weights of an expert are not in memory, the
            engine has to read them from the disk, and that is the slow part of the whole computation.
            A tokenizer turns text into numbers: it splits the text into pieces, then merges the most frequent
            pairs of bytes into longer tokens, again and again, until no known merge is left. The words that
            appear often in the training text end up as single tokens, and rare words are spelled out.
            Here is some code: for (int i = 0; i < n; i++) { sum += a[i] * b[i]; } return sum;
            Numbers are split into single digits: 2024, 1000000, 3.14159 and 42 are all spelled digit by digit.
            Questions and answers: What is the capital of France? The capital of France is Paris. How many
            days are there in a week? There are seven days in a week. Where do the experts live? In the file.
            """;

    private static final Pattern PIECES = Pattern.compile(" ?\\p{L}+| ?\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+");
    private static final String FILLER_LETTERS = "etaoinshrdlucmfwypvbgkjqxz";

    public TestVocabulary {
        tokens = List.copyOf(tokens);
        tokenTypes = tokenTypes.clone();
        merges = List.copyOf(merges);
    }

    @Override
    public int[] tokenTypes() { return tokenTypes.clone(); }

    public int size() { return tokens.size(); }

    public int endOfTextId() { return size() - 3; }

    public int imStartId() { return size() - 2; }

    public int imEndId() { return size() - 1; }

    /** The vocabulary with exactly {@code size} tokens ({@code size >= 259}). */
    public static TestVocabulary build(int size) {
        if (size < ModelShape.MIN_VOCAB) {
            throw new IllegalArgumentException("vocabulary size " + size + " is below " + ModelShape.MIN_VOCAB);
        }
        int normal = size - 3;
        List<String> tokens = new ArrayList<>(size);
        List<String> merges = new ArrayList<>(normal - 256);
        Set<String> known = new HashSet<>(size * 2);
        for (String symbol : byteSymbolsInGpt2Order()) {
            tokens.add(symbol);
            known.add(symbol);
        }
        learnMerges(byteSymbols(), normal, tokens, merges, known);
        addFillerMerges(normal, tokens, merges, known);
        tokens.addAll(List.of(END_OF_TEXT, IM_START, IM_END));
        int[] types = new int[size];
        Arrays.fill(types, NORMAL);
        Arrays.fill(types, normal, size, CONTROL);
        return new TestVocabulary(tokens, types, merges);
    }

    /** Classic BPE training on {@link #CORPUS}: repeatedly merge the most frequent adjacent pair. */
    private static void learnMerges(String[] byteSymbols, int target, List<String> tokens, List<String> merges,
                                    Set<String> known) {
        Map<String, Integer> pieceCounts = new HashMap<>();
        Matcher m = PIECES.matcher(CORPUS.strip().replaceAll("\\s*\\n\\s*", " "));
        while (m.find()) {
            pieceCounts.merge(m.group(), 1, Integer::sum);
        }
        List<List<String>> words = new ArrayList<>();
        List<Integer> counts = new ArrayList<>();
        pieceCounts.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e -> {
            List<String> symbols = new ArrayList<>();
            for (byte b : e.getKey().getBytes(StandardCharsets.UTF_8)) {
                symbols.add(byteSymbols[b & 0xFF]);
            }
            words.add(symbols);
            counts.add(e.getValue());
        });
        while (tokens.size() < target) {
            Map<String, Integer> pairs = new HashMap<>();
            for (int w = 0; w < words.size(); w++) {
                List<String> s = words.get(w);
                for (int i = 0; i + 1 < s.size(); i++) {
                    pairs.merge(s.get(i) + " " + s.get(i + 1), counts.get(w), Integer::sum);
                }
            }
            String best = null;
            int bestCount = 1;   // a pair seen once is not "frequent": leave the rest to the filler
            for (Map.Entry<String, Integer> e : pairs.entrySet()) {
                int c = e.getValue();
                if (c > bestCount || (c == bestCount && best != null && e.getKey().compareTo(best) < 0)) {
                    best = e.getKey();
                    bestCount = c;
                }
            }
            if (best == null) {
                return;
            }
            int space = best.indexOf(' ');
            String left = best.substring(0, space);
            String right = best.substring(space + 1);
            String merged = left + right;
            merges.add(best);
            if (known.add(merged)) {
                tokens.add(merged);
            }
            for (List<String> s : words) {
                for (int i = 0; i + 1 < s.size(); i++) {
                    if (s.get(i).equals(left) && s.get(i + 1).equals(right)) {
                        s.set(i, merged);
                        s.remove(i + 1);
                    }
                }
            }
        }
    }

    /** Grows the vocabulary to {@code target} by appending letters to existing tokens, oldest tokens first. */
    private static void addFillerMerges(int target, List<String> tokens, List<String> merges, Set<String> known) {
        for (int base = 0; tokens.size() < target; base++) {
            String left = tokens.get(base);
            for (int i = 0; i < FILLER_LETTERS.length() && tokens.size() < target; i++) {
                String right = String.valueOf(FILLER_LETTERS.charAt(i));
                if (known.add(left + right)) {
                    tokens.add(left + right);
                    merges.add(left + " " + right);
                }
            }
        }
    }

    /**
     * GPT-2's byte-to-unicode map: printable bytes map to themselves, the other 68 bytes (controls, space,
     * 0x7F-0xA0, soft hyphen) to U+0100 onwards, in byte order. Index = byte value.
     */
    public static String[] byteSymbols() {
        String[] symbols = new String[256];
        int next = 0x100;
        for (int b = 0; b < 256; b++) {
            symbols[b] = Character.toString(isPrintable(b) ? b : next++);
        }
        return symbols;
    }

    /** The byte symbols in GPT-2's token order: the printable ones first, then the remapped ones. */
    private static String[] byteSymbolsInGpt2Order() {
        String[] bySymbol = byteSymbols();
        String[] ordered = new String[256];
        int rank = 0;
        for (int b = 0; b < 256; b++) {
            if (isPrintable(b)) {
                ordered[rank++] = bySymbol[b];
            }
        }
        for (int b = 0; b < 256; b++) {
            if (!isPrintable(b)) {
                ordered[rank++] = bySymbol[b];
            }
        }
        return ordered;
    }

    private static boolean isPrintable(int b) {
        return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    }
}
