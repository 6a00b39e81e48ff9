package moe4j.engine.chat;

import java.util.List;

/**
 * Renders a conversation into the prompt text a model was trained on. The result contains
 * special tokens written literally (e.g. {@code <|im_start|>}), so it must be tokenized with
 * special-token parsing on.
 */
public interface ChatTemplate {

    /**
     * @param messages            the conversation, oldest first
     * @param addGenerationPrompt append the opening of the assistant's next turn
     * @param enableThinking      for templates with a reasoning phase: false asks the model to
     *                            answer directly (templates without one ignore it)
     */
    String render(List<ChatMessage> messages, boolean addGenerationPrompt, boolean enableThinking);

    /** A short identifier such as {@code chatml} or {@code qwen3}. */
    String name();
}
