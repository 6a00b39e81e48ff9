package moe4j.engine.generation;

import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Limits and stop conditions of one generation.
 *
 * @param maxTokens    most tokens to generate
 * @param stopTokens   ids that end generation, in addition to the tokenizer's end-of-generation ids
 * @param stopStrings  texts that end generation; the text is cut before the first occurrence
 * @param cancellation checked before each token
 */
public record GenerationOptions(int maxTokens, Set<Integer> stopTokens, List<String> stopStrings,
                                CancellationToken cancellation) {

    public GenerationOptions {
        if (maxTokens < 0) {
            throw new IllegalArgumentException("max tokens must not be negative, got " + maxTokens);
        }
        stopTokens = Set.copyOf(stopTokens);
        stopStrings = List.copyOf(stopStrings);
        for (String s : stopStrings) {
            if (s.isEmpty()) {
                throw new IllegalArgumentException("stop strings must not be empty");
            }
        }
        Objects.requireNonNull(cancellation, "cancellation");
    }

    public static GenerationOptions maxTokens(int maxTokens) {
        return new GenerationOptions(maxTokens, Set.of(), List.of(), new CancellationToken());
    }

    public GenerationOptions withStopTokens(Set<Integer> ids) {
        return new GenerationOptions(maxTokens, ids, stopStrings, cancellation);
    }

    public GenerationOptions withStopStrings(List<String> strings) {
        return new GenerationOptions(maxTokens, stopTokens, strings, cancellation);
    }

    public GenerationOptions withCancellation(CancellationToken token) {
        return new GenerationOptions(maxTokens, stopTokens, stopStrings, token);
    }
}
