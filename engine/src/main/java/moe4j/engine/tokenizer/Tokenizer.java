package moe4j.engine.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.Set;
import java.util.TreeSet;
import java.util.logging.Logger;
import moe4j.gguf.GgufMetadata;

/**
 * Byte-level BPE tokenizer (GGUF {@code tokenizer.ggml.model = gpt2}), matching llama.cpp's
 * {@code llama_tokenize} / {@code llama_token_to_piece} for the supported pre-tokenizers.
 *
 * <p>Encoding: literal special tokens are cut out first (longest text first; USER_DEFINED always,
 * CONTROL/UNKNOWN only when {@code parseSpecial}); every remaining fragment is split into words by
 * the {@link PreTokenizer}, each word's UTF-8 bytes are mapped to the byte-level alphabet, and the
 * lowest-ranked adjacent pair is merged until no pair is in the merge table.
 *
 * <p>Decoding is the concatenation of token pieces. Unlike llama.cpp's whole-text
 * {@code llama_detokenize} with {@code clean_spaces}, no space clean-up is applied for any
 * pre-tokenizer, so {@code decode(encode(s, false, false)).equals(s)} for every valid string.
 *
 * <p>Immutable and thread-safe; encoding keeps no cache, so memory use does not grow with use.
 */
public final class Tokenizer {

    private static final Logger LOG = Logger.getLogger(Tokenizer.class.getName());

    /** Texts that end generation when present in the vocabulary (llama.cpp's EOG and FIM lists). */
    private static final List<String> END_OF_GENERATION_TEXTS = List.of(
            "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
            "<｜end▁of▁sentence｜>", "<end_of_utterance>", "<|fim_pad|>", "<|repo_name|>", "<|fim_repo|>", "<|file_sep|>");

    private final String[] texts;
    private final TokenType[] types;
    private final Map<String, Integer> idByText;
    private final MergeTable merges;
    private final PreTokenizer preTokenizer;
    /** CONTROL, USER_DEFINED and UNKNOWN ids, longest UTF-8 text first. */
    private final int[] specialsLongestFirst;
    private final OptionalInt bos;
    private final OptionalInt eos;
    private final boolean addBos;
    private final boolean addEos;
    private final Set<Integer> endOfGeneration;
    private final int[] endOfGenerationSorted;

    private Tokenizer(TokenizerSpec spec) {
        int n = spec.tokens().size();
        texts = new String[n];
        types = spec.types().toArray(new TokenType[0]);
        idByText = HashMap.newHashMap(n);
        for (int id = 0; id < n; id++) {
            String text = spec.tokens().get(id);
            texts[id] = text == null || text.isEmpty() ? "[EMPTY_" + id + "]" : text;
            if (types[id] == null) {
                throw new IllegalArgumentException("token " + id + " has no token type");
            }
            idByText.put(texts[id], id); // a duplicated text resolves to its last id, as in llama.cpp
        }
        preTokenizer = spec.preTokenizer();
        merges = new MergeTable(n, idByText, spec.merges());
        bos = validId(spec.bos(), "bos_token_id");
        eos = validId(spec.eos(), "eos_token_id");
        OptionalInt eot = validId(spec.eot(), "eot_token_id");
        addBos = spec.addBos();
        addEos = spec.addEos();
        if (addBos && bos.isEmpty()) {
            throw new IllegalArgumentException("add_bos_token is true but the vocabulary has no bos_token_id");
        }
        if (addEos && eos.isEmpty()) {
            throw new IllegalArgumentException("add_eos_token is true but the vocabulary has no eos_token_id");
        }

        Set<Integer> eog = new TreeSet<>();
        eos.ifPresent(eog::add);
        eot.ifPresent(eog::add);
        for (String text : END_OF_GENERATION_TEXTS) {
            Integer id = idByText.get(text);
            if (id != null) {
                eog.add(id);
                if (types[id] != TokenType.CONTROL) {
                    // llama.cpp treats every end-of-generation token as a control token
                    LOG.fine(() -> "token " + id + " '" + text + "' is an end-of-generation token; treating it as CONTROL");
                    types[id] = TokenType.CONTROL;
                }
            }
        }
        endOfGeneration = Collections.unmodifiableSet(eog);
        endOfGenerationSorted = eog.stream().mapToInt(Integer::intValue).toArray();

        List<Integer> specials = new ArrayList<>();
        for (int id = 0; id < n; id++) {
            if (types[id].isSpecial()) {
                specials.add(id);
            }
        }
        specials.sort(Comparator.<Integer>comparingInt(id -> -utf8Length(texts[id])).thenComparingInt(id -> id));
        specialsLongestFirst = specials.stream().mapToInt(Integer::intValue).toArray();
    }

    private OptionalInt validId(OptionalInt id, String key) {
        if (id.isPresent() && (id.getAsInt() < 0 || id.getAsInt() >= texts.length)) {
            LOG.warning(() -> "tokenizer.ggml." + key + " = " + id.getAsInt() + " is outside the vocabulary (size "
                    + texts.length + "); ignoring it");
            return OptionalInt.empty();
        }
        return id;
    }

    /** Builds a tokenizer from plain vocabulary data. */
    public static Tokenizer create(TokenizerSpec spec) {
        return new Tokenizer(Objects.requireNonNull(spec, "spec"));
    }

    /**
     * Builds the tokenizer described by a GGUF file's {@code tokenizer.*} keys.
     *
     * @throws IllegalArgumentException when the tokenizer model or pre-tokenizer is not supported
     *                                  or the vocabulary is inconsistent
     */
    public static Tokenizer fromGguf(GgufMetadata md) {
        String model = md.getString("tokenizer.ggml.model");
        if (!model.equals("gpt2")) {
            throw new IllegalArgumentException("tokenizer model '" + model
                    + "' not supported yet (tokenizer.ggml.model; supported: gpt2 = byte-level BPE)");
        }
        String preName = md.findString("tokenizer.ggml.pre").orElseThrow(() -> new IllegalArgumentException(
                "tokenizer.ggml.pre is missing; without it the word-splitting rule is unknown"));
        PreTokenizer pre = PreTokenizer.forGgufName(preName);
        List<String> tokens = md.getStringList("tokenizer.ggml.tokens");
        List<TokenType> types;
        if (md.contains("tokenizer.ggml.token_type")) {
            int[] codes = md.getIntArray("tokenizer.ggml.token_type");
            types = new ArrayList<>(codes.length);
            for (int id = 0; id < codes.length; id++) {
                types.add(TokenType.fromCode(codes[id], id));
            }
        } else {
            types = Collections.nCopies(tokens.size(), TokenType.NORMAL);
        }
        return create(new TokenizerSpec(tokens, types, md.getStringList("tokenizer.ggml.merges"), pre,
                md.findInt("tokenizer.ggml.bos_token_id"), md.findInt("tokenizer.ggml.eos_token_id"),
                md.findInt("tokenizer.ggml.eot_token_id"),
                md.findBoolean("tokenizer.ggml.add_bos_token").orElse(pre.addsBosByDefault()),
                md.findBoolean("tokenizer.ggml.add_eos_token").orElse(false)));
    }

    // ---------------------------------------------------------------------------------- encoding

    /** Encodes with the model's BOS/EOS policy and with special tokens in the text recognized. */
    public int[] encode(String text) {
        return encode(text, true, true);
    }

    /**
     * Encodes text to token ids.
     *
     * @param addSpecial   add BOS/EOS as the model asks ({@code add_bos_token}/{@code add_eos_token})
     * @param parseSpecial recognize CONTROL tokens such as {@code <|im_start|>} written literally in
     *                     the text (USER_DEFINED tokens such as {@code <think>} are always recognized)
     */
    public int[] encode(String text, boolean addSpecial, boolean parseSpecial) {
        Objects.requireNonNull(text, "text");
        Session session = new Session();
        if (addSpecial && addBos) {
            session.out.add(bos.getAsInt());
        }
        for (Fragment fragment : partition(text, parseSpecial)) {
            if (fragment.token() >= 0) {
                session.out.add(fragment.token());
            } else {
                encodeFragment(text, fragment.start(), fragment.end(), session);
            }
        }
        if (addSpecial && addEos) {
            session.out.add(eos.getAsInt());
        }
        return session.out.toArray();
    }

    /** A special token ({@code token >= 0}) or raw text {@code [start, end)}. */
    private record Fragment(int token, int start, int end) {
    }

    private List<Fragment> partition(String text, boolean parseSpecial) {
        List<Fragment> fragments = new ArrayList<>();
        if (!text.isEmpty()) {
            fragments.add(new Fragment(-1, 0, text.length()));
        }
        for (int id : specialsLongestFirst) {
            if (!parseSpecial && types[id].isControlLike()) {
                continue;
            }
            String special = texts[id];
            int next = text.indexOf(special);
            if (next < 0) {
                continue;
            }
            List<Fragment> out = new ArrayList<>(fragments.size() + 2);
            for (Fragment f : fragments) {
                if (f.token() >= 0) {
                    out.add(f);
                    continue;
                }
                int from = f.start();
                while (true) {
                    if (next >= 0 && next < from) {
                        // the cached match was inside an earlier token or consumed: search on
                        next = text.indexOf(special, from);
                    }
                    if (next < 0 || next + special.length() > f.end()) {
                        break;
                    }
                    if (next > from) {
                        out.add(new Fragment(-1, from, next));
                    }
                    out.add(new Fragment(id, next, next + special.length()));
                    from = next + special.length();
                }
                if (from < f.end()) {
                    out.add(new Fragment(-1, from, f.end()));
                }
            }
            fragments = out;
        }
        return fragments;
    }

    private void encodeFragment(String text, int start, int end, Session session) {
        int[] cps = codePoints(text, start, end);
        int[] wordStart = {0};
        preTokenizer.split(cps, cps.length, wordEnd -> {
            session.encodeWord(cps, wordStart[0], wordEnd);
            wordStart[0] = wordEnd;
        });
    }

    /** Code points of {@code s[start, end)}; an unpaired surrogate becomes U+FFFD, as invalid UTF-8 does in llama.cpp. */
    static int[] codePoints(CharSequence s, int start, int end) {
        int[] out = new int[end - start];
        int n = 0;
        for (int i = start; i < end; ) {
            char c = s.charAt(i++);
            int cp = c;
            if (Character.isHighSurrogate(c) && i < end && Character.isLowSurrogate(s.charAt(i))) {
                cp = Character.toCodePoint(c, s.charAt(i++));
            } else if (Character.isSurrogate(c)) {
                cp = 0xFFFD;
            }
            out[n++] = cp;
        }
        return n == out.length ? out : Arrays.copyOf(out, n);
    }

    private static int utf8Length(String s) {
        return s.getBytes(StandardCharsets.UTF_8).length;
    }

    /** Scratch state of one {@link #encode} call; grown to the longest word, then reused. */
    private final class Session {
        final IntList out = new IntList();
        byte[] bytes = new byte[64];
        int[] symbols = new int[64];
        int[] prev = new int[64];
        int[] next = new int[64];
        final LongHeap queue = new LongHeap();

        void encodeWord(int[] cps, int from, int to) {
            int n = toUtf8(cps, from, to);
            if (preTokenizer.ignoreMerges()) {
                Integer whole = idByText.get(ByteLevel.encode(bytes, 0, n));
                if (whole != null) {
                    out.add(whole);
                    return;
                }
            }
            if (symbols.length < n) {
                int capacity = Math.max(n, symbols.length * 2);
                symbols = new int[capacity];
                prev = new int[capacity];
                next = new int[capacity];
            }
            for (int i = 0; i < n; i++) {
                symbols[i] = merges.byteSymbol(bytes[i]);
                prev[i] = i - 1;
                next[i] = i + 1 < n ? i + 1 : -1;
            }
            queue.clear();
            for (int i = 0; i + 1 < n; i++) {
                enqueue(i, i + 1);
            }
            while (!queue.isEmpty()) {
                long entry = queue.poll();
                int rank = (int) (entry >>> 32);
                int left = (int) entry;
                int right = symbols[left] < 0 ? -1 : next[left];
                if (right < 0) {
                    continue; // left was merged away, or is now last
                }
                long merge = merges.merge(symbols[left], symbols[right]);
                if (merge == MergeTable.ABSENT || (int) (merge >>> 32) != rank) {
                    continue; // stale: a neighbour changed since this pair was queued
                }
                symbols[left] = (int) merge;
                symbols[right] = -1;
                next[left] = next[right];
                if (next[left] >= 0) {
                    prev[next[left]] = left;
                    enqueue(left, next[left]);
                }
                if (prev[left] >= 0) {
                    enqueue(prev[left], left);
                }
            }
            for (int i = 0; i >= 0; i = next[i]) {
                emit(symbols[i]);
            }
        }

        private void enqueue(int left, int right) {
            long merge = merges.merge(symbols[left], symbols[right]);
            if (merge != MergeTable.ABSENT) {
                // (rank, left position) ascending = lowest rank first, leftmost among equals
                queue.add((merge & 0xFFFFFFFF00000000L) | left);
            }
        }

        /** A merge result missing from the vocabulary falls back to its single-byte ASCII pieces, as llama.cpp does. */
        private void emit(int symbol) {
            if (merges.isToken(symbol)) {
                out.add(symbol);
                return;
            }
            String text = merges.extraText(symbol);
            for (int i = 0; i < text.length(); i++) {
                char c = text.charAt(i);
                Integer id = c < 0x80 ? idByText.get(String.valueOf(c)) : null;
                if (id != null) {
                    out.add(id);
                }
            }
        }

        private int toUtf8(int[] cps, int from, int to) {
            int needed = (to - from) * 4;
            if (bytes.length < needed) {
                bytes = new byte[Math.max(needed, bytes.length * 2)];
            }
            int n = 0;
            for (int i = from; i < to; i++) {
                int cp = cps[i];
                if (cp < 0x80) {
                    bytes[n++] = (byte) cp;
                } else if (cp < 0x800) {
                    bytes[n++] = (byte) (0xC0 | cp >> 6);
                    bytes[n++] = (byte) (0x80 | cp & 0x3F);
                } else if (cp < 0x10000) {
                    bytes[n++] = (byte) (0xE0 | cp >> 12);
                    bytes[n++] = (byte) (0x80 | cp >> 6 & 0x3F);
                    bytes[n++] = (byte) (0x80 | cp & 0x3F);
                } else {
                    bytes[n++] = (byte) (0xF0 | cp >> 18);
                    bytes[n++] = (byte) (0x80 | cp >> 12 & 0x3F);
                    bytes[n++] = (byte) (0x80 | cp >> 6 & 0x3F);
                    bytes[n++] = (byte) (0x80 | cp & 0x3F);
                }
            }
            return n;
        }
    }

    // ---------------------------------------------------------------------------------- decoding

    /** Decodes ids to text; CONTROL tokens (e.g. {@code <|im_end|>}) are left out, USER_DEFINED ones printed. */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    /**
     * Decodes ids to text. Byte sequences that are not valid UTF-8 (e.g. a cut-off multi-byte
     * character at the end) become U+FFFD.
     *
     * @param renderSpecial also print CONTROL and UNKNOWN tokens' texts
     */
    public String decode(int[] ids, boolean renderSpecial) {
        ByteSink sink = new ByteSink();
        for (int id : ids) {
            appendPiece(id, renderSpecial, sink);
        }
        return sink.toString(sink.size());
    }

    /** A decoder for generated tokens that yields only complete characters; see {@link StreamingDecoder}. */
    public StreamingDecoder streamingDecoder() {
        return new StreamingDecoder(this, false);
    }

    /** As {@link #streamingDecoder()}, optionally printing CONTROL tokens' texts. */
    public StreamingDecoder streamingDecoder(boolean renderSpecial) {
        return new StreamingDecoder(this, renderSpecial);
    }

    /** Appends the bytes that token {@code id} stands for. */
    void appendPiece(int id, boolean renderSpecial, ByteSink sink) {
        checkId(id);
        String text = texts[id];
        switch (types[id]) {
            case NORMAL -> {
                for (int i = 0; i < text.length(); ) {
                    int cp = text.codePointAt(i);
                    int b = ByteLevel.byteOf(cp);
                    if (b >= 0) {
                        sink.add(b);
                    } else {
                        // a NORMAL text outside the byte-level alphabet: the vocabulary is not byte-level here
                        sink.addUtf8("[UNK_BYTE_0x" + HexFormat.of().formatHex(Character.toString(cp).getBytes(StandardCharsets.UTF_8)) + "]");
                    }
                    i += Character.charCount(cp);
                }
            }
            case USER_DEFINED -> sink.addUtf8(text);
            case CONTROL, UNKNOWN -> {
                if (renderSpecial) {
                    sink.addUtf8(text);
                }
            }
            case BYTE -> {
                int b = byteTokenValue(text);
                if (b >= 0) {
                    sink.add(b);
                }
            }
            case UNDEFINED, UNUSED -> {
                // stand for no text
            }
        }
    }

    /** The byte of a BYTE token written {@code <0xXX>}, or -1 when the text has another form. */
    private static int byteTokenValue(String text) {
        if (text.length() == 6 && text.startsWith("<0x") && text.endsWith(">")) {
            try {
                return Integer.parseInt(text, 3, 5, 16);
            } catch (NumberFormatException e) {
                return -1;
            }
        }
        return -1;
    }

    // ----------------------------------------------------------------------------- vocabulary info

    public int vocabSize() {
        return texts.length;
    }

    /** The token's stored text (for NORMAL tokens a byte-level string, e.g. {@code Ġworld}). */
    public String tokenText(int id) {
        checkId(id);
        return texts[id];
    }

    public TokenType tokenType(int id) {
        checkId(id);
        return types[id];
    }

    /** The id whose stored text is exactly {@code tokenText}, e.g. {@code find("<|im_end|>")}. */
    public OptionalInt find(String tokenText) {
        Integer id = idByText.get(tokenText);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    public OptionalInt bos() {
        return bos;
    }

    public OptionalInt eos() {
        return eos;
    }

    public PreTokenizer preTokenizer() {
        return preTokenizer;
    }

    /** True when generation should stop after this token (EOS, EOT, {@code <|im_end|>}, ...). */
    public boolean isEndOfGeneration(int id) {
        return Arrays.binarySearch(endOfGenerationSorted, id) >= 0;
    }

    /** All end-of-generation ids, ascending (unmodifiable). */
    public Set<Integer> endOfGenerationIds() {
        return endOfGeneration;
    }

    private void checkId(int id) {
        if (id < 0 || id >= texts.length) {
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + texts.length + ")");
        }
    }

    // ------------------------------------------------------------------------------- small buffers

    /** Growable int list for token output. */
    private static final class IntList {
        private int[] data = new int[16];
        private int size;

        void add(int v) {
            if (size == data.length) {
                data = Arrays.copyOf(data, size * 2);
            }
            data[size++] = v;
        }

        int[] toArray() {
            return Arrays.copyOf(data, size);
        }
    }

    /** Binary min-heap of longs (BPE candidates keyed by rank and position), no boxing. */
    private static final class LongHeap {
        private long[] heap = new long[64];
        private int size;

        void clear() {
            size = 0;
        }

        boolean isEmpty() {
            return size == 0;
        }

        void add(long v) {
            if (size == heap.length) {
                heap = Arrays.copyOf(heap, size * 2);
            }
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (heap[parent] <= v) {
                    break;
                }
                heap[i] = heap[parent];
                i = parent;
            }
            heap[i] = v;
        }

        long poll() {
            long top = heap[0];
            long last = heap[--size];
            int i = 0;
            while (true) {
                int child = 2 * i + 1;
                if (child >= size) {
                    break;
                }
                if (child + 1 < size && heap[child + 1] < heap[child]) {
                    child++;
                }
                if (heap[child] >= last) {
                    break;
                }
                heap[i] = heap[child];
                i = child;
            }
            heap[i] = last;
            return top;
        }
    }
}
