package moe4j.engine.generation;

/**
 * The outcome of a generation.
 *
 * @param tokens       generated ids (without a final stop token)
 * @param text         the generated text up to any stop string; empty without a tokenizer
 * @param stopReason   why it ended
 * @param promptTokens tokens of the prompt that was evaluated first
 */
public record GenerationResult(int[] tokens, String text, StopReason stopReason, int promptTokens) {
}
