package moe4j.engine.chat;

import java.util.Objects;

/**
 * One turn of a conversation.
 *
 * @param role    {@code system}, {@code user}, {@code assistant} or {@code tool}
 * @param content the turn's text; an assistant turn may hold its reasoning as
 *                {@code <think>...</think>} before the answer
 */
public record ChatMessage(String role, String content) {

    public ChatMessage {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
        if (role.isBlank()) {
            throw new IllegalArgumentException("chat message role is blank");
        }
    }

    public static ChatMessage system(String content) {
        return new ChatMessage("system", content);
    }

    public static ChatMessage user(String content) {
        return new ChatMessage("user", content);
    }

    public static ChatMessage assistant(String content) {
        return new ChatMessage("assistant", content);
    }

    /** A tool's result, answered to the assistant's last tool call. */
    public static ChatMessage tool(String content) {
        return new ChatMessage("tool", content);
    }
}
