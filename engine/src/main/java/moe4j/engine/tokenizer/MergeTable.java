package moe4j.engine.tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * BPE merge ranks over integer symbols. A symbol is a byte-level string: the vocabulary's texts
 * keep their token ids as symbol ids, and merge operands or results that are not in the
 * vocabulary get ids after the vocabulary, so that every string compare becomes an int compare.
 */
final class MergeTable {

    static final long ABSENT = -1L;

    private final int vocabSize;
    /** Texts of the symbols that are not vocabulary entries (id = vocabSize + index). */
    private final List<String> extraTexts;
    private final int[] byteSymbols = new int[256];
    private final PairMap pairs;

    /**
     * @param idByText vocabulary text to token id (for duplicated texts the last id, as llama.cpp)
     * @param merges   "left right" strings; rank = index, the first of duplicated pairs wins
     */
    MergeTable(int vocabSize, Map<String, Integer> idByText, List<String> merges) {
        this.vocabSize = vocabSize;
        Map<String, Integer> extraIds = new HashMap<>();
        List<String> extras = new ArrayList<>();
        java.util.function.Function<String, Integer> intern = text -> {
            Integer id = idByText.get(text);
            if (id != null) {
                return id;
            }
            return extraIds.computeIfAbsent(text, t -> {
                extras.add(t);
                return vocabSize + extras.size() - 1;
            });
        };
        for (int b = 0; b < 256; b++) {
            byteSymbols[b] = intern.apply(String.valueOf(ByteLevel.charOf(b)));
        }
        pairs = new PairMap(merges.size());
        for (int rank = 0; rank < merges.size(); rank++) {
            String merge = merges.get(rank);
            int space = merge == null ? -1 : merge.indexOf(' ', 1);
            if (space < 0) {
                throw new IllegalArgumentException("merge " + rank + " (tokenizer.ggml.merges) is not of the form 'left right': '"
                        + merge + "'");
            }
            String left = merge.substring(0, space);
            String right = merge.substring(space + 1);
            int leftId = intern.apply(left);
            int rightId = intern.apply(right);
            int resultId = intern.apply(left + right);
            pairs.putIfAbsent(key(leftId, rightId), ((long) rank << 32) | resultId);
        }
        this.extraTexts = List.copyOf(extras);
    }

    private static long key(int left, int right) {
        return ((long) left << 32) | (right & 0xFFFFFFFFL);
    }

    /** The symbol of one input byte. */
    int byteSymbol(int b) {
        return byteSymbols[b & 0xFF];
    }

    /** {@code rank << 32 | mergedSymbol} for a mergeable adjacent pair, or {@link #ABSENT}. */
    long merge(int left, int right) {
        return pairs.get(key(left, right));
    }

    /** True when the symbol is a vocabulary entry (its id is then the token id). */
    boolean isToken(int symbol) {
        return symbol < vocabSize;
    }

    String extraText(int symbol) {
        return extraTexts.get(symbol - vocabSize);
    }

    /** Open-addressing long-to-long map: the merge table is hit once per candidate pair. */
    private static final class PairMap {
        private static final long EMPTY = -1L; // keys are two non-negative ints: never -1

        private final long[] keys;
        private final long[] values;
        private final int mask;
        private final int shift;

        PairMap(int expected) {
            int capacity = Integer.highestOneBit(Math.max(4, expected) * 2 - 1) << 1; // load <= 1/2
            keys = new long[capacity];
            values = new long[capacity];
            mask = capacity - 1;
            shift = 64 - Integer.numberOfTrailingZeros(capacity);
            Arrays.fill(keys, EMPTY);
        }

        /** Fibonacci hashing: the top bits of the product depend on both halves of the key. */
        private int slot(long key) {
            return (int) ((key * 0x9E3779B97F4A7C15L) >>> shift);
        }

        void putIfAbsent(long key, long value) {
            int i = slot(key);
            while (keys[i] != EMPTY) {
                if (keys[i] == key) {
                    return;
                }
                i = (i + 1) & mask;
            }
            keys[i] = key;
            values[i] = value;
        }

        long get(long key) {
            int i = slot(key);
            while (keys[i] != EMPTY) {
                if (keys[i] == key) {
                    return values[i];
                }
                i = (i + 1) & mask;
            }
            return ABSENT;
        }
    }
}
