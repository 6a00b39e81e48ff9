package moe4j.engine.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

class ChatMlTemplateTest {

    private final ChatTemplate chatMl = ChatTemplates.chatMl();

    @Test
    void framesEveryMessageAndAddsTheGenerationPrompt() {
        List<ChatMessage> messages = List.of(
                ChatMessage.system("You are terse."),
                ChatMessage.user("Hi"),
                ChatMessage.assistant("Hello."),
                ChatMessage.user("2+2?"));
        String expected = "<|im_start|>system\nYou are terse.<|im_end|>\n"
                + "<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello.<|im_end|>\n"
                + "<|im_start|>user\n2+2?<|im_end|>\n"
                + "<|im_start|>assistant\n";
        assertEquals(expected, chatMl.render(messages, true, true));
        // no reasoning phase: enableThinking changes nothing
        assertEquals(expected, chatMl.render(messages, true, false));
    }

    @Test
    void withoutGenerationPromptAndWithAnyRole() {
        assertEquals("<|im_start|>tool\n42<|im_end|>\n",
                chatMl.render(List.of(new ChatMessage("tool", "42")), false, true));
        assertEquals("", chatMl.render(List.of(), false, true));
        assertEquals("<|im_start|>assistant\n", chatMl.render(List.of(), true, true));
    }
}
