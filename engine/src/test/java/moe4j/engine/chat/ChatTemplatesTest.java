package moe4j.engine.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import moe4j.gguf.Fixtures;
import moe4j.gguf.GgufFile;
import org.junit.jupiter.api.Test;

class ChatTemplatesTest {

    /** Excerpt of the Qwen3 Jinja template: ChatML markers plus the thinking switch. */
    private static final String QWEN3_EXCERPT = """
            {%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}{%- endfor %}
            {%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}
            {%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}
            {%- endif %}""";

    private static final String CHATML_EXCERPT = """
            {% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}""";

    @Test
    void recognizesQwen3ByThinkingMarkers() {
        assertSame(ChatTemplates.qwen3(), ChatTemplates.detect(Optional.of(QWEN3_EXCERPT)));
        assertSame(ChatTemplates.qwen3(), ChatTemplates.detect(Optional.of("<|im_start|> ... <think>")));
        assertEquals("qwen3", ChatTemplates.qwen3().name());
    }

    @Test
    void recognizesPlainChatMl() {
        assertSame(ChatTemplates.chatMl(), ChatTemplates.detect(Optional.of(CHATML_EXCERPT)));
        assertEquals("chatml", ChatTemplates.chatMl().name());
    }

    @Test
    void unknownOrMissingTemplatesFallBackToChatMl() {
        assertSame(ChatTemplates.chatMl(), ChatTemplates.detect(Optional.of("{{ bos_token }}[INST] {{ content }} [/INST]")));
        assertSame(ChatTemplates.chatMl(), ChatTemplates.detect(Optional.empty()));
        assertThrows(NullPointerException.class, () -> ChatTemplates.detect(null));
    }

    @Test
    void qwen2FixtureTemplateIsChatMl() throws IOException {
        Fixtures.requireShared();
        try (GgufFile f = GgufFile.open(Fixtures.fixturesDir().resolve("vocab/ggml-vocab-qwen2.gguf"))) {
            ChatTemplate t = ChatTemplates.fromGguf(f.metadata());
            assertSame(ChatTemplates.chatMl(), t);
            assertEquals("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                    t.render(List.of(ChatMessage.user("hi")), true, true));
        }
    }

    @Test
    void fixtureModelsCarryTheQwen3TemplateWhichRendersTheReferencePrompt() throws IOException {
        Path fixtures = Fixtures.fixturesDir();
        try (GgufFile f = GgufFile.open(Fixtures.model("tiny-qwen3moe-F32.gguf"))) {
            ChatTemplate t = ChatTemplates.fromGguf(f.metadata());
            assertSame(ChatTemplates.qwen3(), t);
            // prompts/p2.txt is the chat prompt the llama.cpp reference run was made with
            assertEquals(Files.readString(fixtures.resolve("prompts/p2.txt")),
                    t.render(List.of(ChatMessage.user("Hello! How are you?")), true, true));
        }
    }

    @Test
    void messagesRejectMissingParts() {
        assertThrows(NullPointerException.class, () -> new ChatMessage(null, "x"));
        assertThrows(NullPointerException.class, () -> new ChatMessage("user", null));
        assertThrows(IllegalArgumentException.class, () -> new ChatMessage(" ", "x"));
    }
}
