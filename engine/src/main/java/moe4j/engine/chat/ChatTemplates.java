package moe4j.engine.chat;

import java.util.Objects;
import java.util.Optional;
import java.util.logging.Logger;
import moe4j.gguf.GgufMetadata;

/**
 * Chooses a built-in renderer for a model's Jinja chat template ({@code tokenizer.chat_template}).
 * moe4j does not evaluate Jinja; it recognizes the template family by marker strings:
 * <ul>
 *   <li>{@code <|im_start|>} plus {@code enable_thinking} or {@code <think>}: {@linkplain #qwen3() Qwen3};</li>
 *   <li>{@code <|im_start|>} otherwise: {@linkplain #chatMl() ChatML};</li>
 *   <li>anything else, or no template: ChatML as the documented default, with a warning logged,
 *       since a wrong format degrades answers without failing.</li>
 * </ul>
 */
public final class ChatTemplates {

    private static final Logger LOG = Logger.getLogger(ChatTemplates.class.getName());

    private ChatTemplates() {
    }

    public static ChatTemplate detect(Optional<String> jinjaTemplate) {
        Objects.requireNonNull(jinjaTemplate, "jinjaTemplate");
        if (jinjaTemplate.isEmpty()) {
            LOG.warning("model has no chat template (tokenizer.chat_template); using ChatML");
            return chatMl();
        }
        String template = jinjaTemplate.get();
        if (template.contains("<|im_start|>")) {
            boolean thinking = template.contains("enable_thinking") || template.contains("<think>");
            return thinking ? qwen3() : chatMl();
        }
        LOG.warning(() -> "chat template not recognized (no <|im_start|>); using ChatML. Template starts: "
                + template.substring(0, Math.min(80, template.length())).replace('\n', ' '));
        return chatMl();
    }

    /** The renderer for a GGUF file's {@code tokenizer.chat_template}. */
    public static ChatTemplate fromGguf(GgufMetadata md) {
        return detect(md.findString("tokenizer.chat_template"));
    }

    public static ChatTemplate chatMl() {
        return ChatMlTemplate.INSTANCE;
    }

    public static ChatTemplate qwen3() {
        return Qwen3ChatTemplate.INSTANCE;
    }
}
