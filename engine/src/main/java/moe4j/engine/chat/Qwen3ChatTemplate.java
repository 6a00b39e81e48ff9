package moe4j.engine.chat;

import java.util.List;

/**
 * The Qwen3 chat template (ChatML with a reasoning phase), reproducing what the Jinja template
 * shipped with Qwen3 renders when no tools are given:
 * <ul>
 *   <li>a {@code system} message is emitted first only when it is the first message; a later one
 *       is rendered in place like a user turn;</li>
 *   <li>the "last query" is the last {@code user} message that is not just a
 *       {@code <tool_response>...</tool_response>} block;</li>
 *   <li>an assistant message's {@code <think>...</think>} part is dropped when the turn is at or
 *       before the last query; after it, the reasoning is kept (re-framed as
 *       {@code <think>\nR\n</think>\n\n}) when it is non-empty or the turn is the last message;</li>
 *   <li>consecutive {@code tool} messages share one {@code user} turn, each wrapped in
 *       {@code <tool_response>};</li>
 *   <li>the generation prompt is {@code <|im_start|>assistant\n}, followed by the empty reasoning
 *       block {@code <think>\n\n</think>\n\n} when thinking is disabled.</li>
 * </ul>
 * Other roles are rejected, since the Qwen3 template would silently drop them.
 */
final class Qwen3ChatTemplate implements ChatTemplate {

    static final Qwen3ChatTemplate INSTANCE = new Qwen3ChatTemplate();

    private static final String THINK_OPEN = "<think>";
    private static final String THINK_CLOSE = "</think>";

    private Qwen3ChatTemplate() {
    }

    @Override
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, boolean enableThinking) {
        int n = messages.size();
        for (int i = 0; i < n; i++) {
            String role = messages.get(i).role();
            if (!List.of("system", "user", "assistant", "tool").contains(role)) {
                throw new IllegalArgumentException("message " + i + ": the Qwen3 chat template has no role '" + role
                        + "' (supported: system, user, assistant, tool)");
            }
        }
        StringBuilder out = new StringBuilder();
        if (n > 0 && messages.getFirst().role().equals("system")) {
            frame(out, "system", messages.getFirst().content());
        }
        int lastQuery = lastQueryIndex(messages);
        for (int i = 0; i < n; i++) {
            ChatMessage m = messages.get(i);
            switch (m.role()) {
                case "user" -> frame(out, "user", m.content());
                case "system" -> {
                    if (i > 0) {
                        frame(out, "system", m.content());
                    }
                }
                case "assistant" -> renderAssistant(out, m.content(), i > lastQuery, i == n - 1);
                default -> { // tool
                    if (i == 0 || !messages.get(i - 1).role().equals("tool")) {
                        out.append("<|im_start|>user");
                    }
                    out.append("\n<tool_response>\n").append(m.content()).append("\n</tool_response>");
                    if (i == n - 1 || !messages.get(i + 1).role().equals("tool")) {
                        out.append("<|im_end|>\n");
                    }
                }
            }
        }
        if (addGenerationPrompt) {
            out.append("<|im_start|>assistant\n");
            if (!enableThinking) {
                out.append("<think>\n\n</think>\n\n");
            }
        }
        return out.toString();
    }

    /** The last real user query; without one, the last index (so no assistant turn counts as after it). */
    private static int lastQueryIndex(List<ChatMessage> messages) {
        for (int i = messages.size() - 1; i >= 0; i--) {
            ChatMessage m = messages.get(i);
            boolean toolResponse = m.content().startsWith("<tool_response>") && m.content().endsWith("</tool_response>");
            if (m.role().equals("user") && !toolResponse) {
                return i;
            }
        }
        return messages.size() - 1;
    }

    private static void renderAssistant(StringBuilder out, String text, boolean afterLastQuery, boolean last) {
        String content = text;
        String reasoning = "";
        int close = text.indexOf(THINK_CLOSE);
        if (close >= 0) {
            String beforeClose = stripTrailingNewlines(text.substring(0, close));
            reasoning = stripLeadingNewlines(beforeClose.substring(lastIndexEnd(beforeClose, THINK_OPEN)));
            content = stripLeadingNewlines(text.substring(text.lastIndexOf(THINK_CLOSE) + THINK_CLOSE.length()));
        }
        out.append("<|im_start|>assistant\n");
        if (afterLastQuery && (last || !reasoning.isEmpty())) {
            out.append(THINK_OPEN).append('\n').append(stripTrailingNewlines(reasoning)).append('\n')
                    .append(THINK_CLOSE).append("\n\n").append(stripLeadingNewlines(content));
        } else {
            out.append(content);
        }
        out.append("<|im_end|>\n");
    }

    private static void frame(StringBuilder out, String role, String content) {
        out.append("<|im_start|>").append(role).append('\n').append(content).append("<|im_end|>\n");
    }

    /** Index just past the last occurrence of {@code marker}, or 0. */
    private static int lastIndexEnd(String s, String marker) {
        int at = s.lastIndexOf(marker);
        return at < 0 ? 0 : at + marker.length();
    }

    private static String stripLeadingNewlines(String s) {
        int i = 0;
        while (i < s.length() && s.charAt(i) == '\n') {
            i++;
        }
        return s.substring(i);
    }

    private static String stripTrailingNewlines(String s) {
        int end = s.length();
        while (end > 0 && s.charAt(end - 1) == '\n') {
            end--;
        }
        return s.substring(0, end);
    }

    @Override
    public String name() {
        return "qwen3";
    }

    @Override
    public String toString() {
        return name();
    }
}
