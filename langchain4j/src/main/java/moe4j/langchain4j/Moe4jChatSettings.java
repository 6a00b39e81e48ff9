package moe4j.langchain4j;

import java.util.Objects;

import dev.langchain4j.model.chat.request.ChatRequestParameters;

/**
 * What the chat adapters do when a request does not say.
 *
 * @param defaults request parameters a request's own override (temperature, top-p, top-k, max output tokens,
 *                 stop sequences, presence and frequency penalties); what neither sets takes llama.cpp's
 *                 sampling defaults and the room left in the context
 * @param seed     seed of the sampler: the same seed, model and request give the same reply
 * @param thinking let models with a reasoning phase (Qwen3) reason before answering; the reasoning goes to
 *                 the reply's {@code AiMessage.thinking()}. Off: they are asked to answer directly
 */
public record Moe4jChatSettings(ChatRequestParameters defaults, long seed, boolean thinking) {

    public Moe4jChatSettings {
        Objects.requireNonNull(defaults, "defaults");
    }

    /** No default parameters, seed 0, no reasoning phase. */
    public static Moe4jChatSettings defaultSettings() {
        return new Moe4jChatSettings(ChatRequestParameters.builder().build(), 0L, false);
    }

    public Moe4jChatSettings withDefaults(ChatRequestParameters defaults) {
        return new Moe4jChatSettings(defaults, seed, thinking);
    }

    public Moe4jChatSettings withSeed(long seed) {
        return new Moe4jChatSettings(defaults, seed, thinking);
    }

    public Moe4jChatSettings withThinking(boolean thinking) {
        return new Moe4jChatSettings(defaults, seed, thinking);
    }
}
