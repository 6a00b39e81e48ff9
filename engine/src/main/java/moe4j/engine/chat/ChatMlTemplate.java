package moe4j.engine.chat;

import java.util.List;

/**
 * Plain ChatML as llama.cpp's built-in fallback renders it: every message as
 * {@code <|im_start|>role\ncontent<|im_end|>\n}, any role, and {@code <|im_start|>assistant\n} as
 * the generation prompt. There is no reasoning phase, so {@code enableThinking} is ignored.
 */
final class ChatMlTemplate implements ChatTemplate {

    static final ChatMlTemplate INSTANCE = new ChatMlTemplate();

    private ChatMlTemplate() {
    }

    @Override
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, boolean enableThinking) {
        StringBuilder out = new StringBuilder();
        for (ChatMessage m : messages) {
            out.append("<|im_start|>").append(m.role()).append('\n').append(m.content()).append("<|im_end|>\n");
        }
        if (addGenerationPrompt) {
            out.append("<|im_start|>assistant\n");
        }
        return out.toString();
    }

    @Override
    public String name() {
        return "chatml";
    }

    @Override
    public String toString() {
        return name();
    }
}
