package moe4j.engine.chat;

import static moe4j.engine.chat.ChatMessage.assistant;
import static moe4j.engine.chat.ChatMessage.system;
import static moe4j.engine.chat.ChatMessage.tool;
import static moe4j.engine.chat.ChatMessage.user;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Expected prompts written out from the Qwen3 template's rules (spec §6.2). */
class Qwen3ChatTemplateTest {

    private final ChatTemplate qwen3 = ChatTemplates.qwen3();

    @Test
    void singleTurnWithThinking() {
        assertEquals("<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n",
                qwen3.render(List.of(user("Why is the sky blue?")), true, true));
    }

    @Test
    void thinkingDisabledAddsAnEmptyThoughtBlock() {
        assertEquals("<|im_start|>system\nBe brief.<|im_end|>\n"
                        + "<|im_start|>user\nHi<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\n\n</think>\n\n",
                qwen3.render(List.of(system("Be brief."), user("Hi")), true, false));
        // without a generation prompt the switch has no effect
        assertEquals("<|im_start|>user\nHi<|im_end|>\n", qwen3.render(List.of(user("Hi")), false, false));
    }

    @Test
    void historyReasoningIsDroppedBeforeTheLastQuery() {
        List<ChatMessage> messages = List.of(
                system("S"),
                user("Q1"),
                assistant("<think>\nfirst thoughts\n</think>\n\nA1"),
                user("Q2"));
        assertEquals("<|im_start|>system\nS<|im_end|>\n"
                        + "<|im_start|>user\nQ1<|im_end|>\n"
                        + "<|im_start|>assistant\nA1<|im_end|>\n"
                        + "<|im_start|>user\nQ2<|im_end|>\n"
                        + "<|im_start|>assistant\n",
                qwen3.render(messages, true, true));
    }

    @Test
    void finalAssistantTurnKeepsItsReasoningBlock() {
        List<ChatMessage> messages = List.of(user("Q"), assistant("<think>\n\nstep 1\nstep 2\n\n</think>\n\nAnswer"));
        assertEquals("<|im_start|>user\nQ<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\nstep 1\nstep 2\n</think>\n\nAnswer<|im_end|>\n",
                qwen3.render(messages, false, true));
        // the final turn gets a (possibly empty) block even without reasoning
        assertEquals("<|im_start|>user\nQ<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\n\n</think>\n\nPlain<|im_end|>\n",
                qwen3.render(List.of(user("Q"), assistant("\nPlain")), false, true));
    }

    @Test
    void assistantTurnsAfterTheLastQueryKeepNonEmptyReasoningOnly() {
        // tool round-trip: the tool result is a "user" turn that is not a query
        List<ChatMessage> messages = List.of(
                user("What is the weather?"),
                assistant("<think>\nneed the tool\n</think>\n\nChecking."),
                tool("{\"temp\": 21}"),
                assistant("No reasoning here."),
                tool("{\"wind\": 3}"),
                tool("{\"rain\": 0}"),
                assistant("<think>done</think>It is 21 degrees."));
        assertEquals("<|im_start|>user\nWhat is the weather?<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\nneed the tool\n</think>\n\nChecking.<|im_end|>\n"
                        + "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n"
                        + "<|im_start|>assistant\nNo reasoning here.<|im_end|>\n"
                        + "<|im_start|>user\n<tool_response>\n{\"wind\": 3}\n</tool_response>"
                        + "\n<tool_response>\n{\"rain\": 0}\n</tool_response><|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\ndone\n</think>\n\nIt is 21 degrees.<|im_end|>\n",
                qwen3.render(messages, false, true));
    }

    @Test
    void aUserMessageHoldingOnlyAToolResponseIsNotTheLastQuery() {
        List<ChatMessage> messages = List.of(
                user("Q"),
                assistant("<think>r1</think>A1"),
                user("<tool_response>\nx\n</tool_response>"),
                assistant("<think>r2</think>A2"));
        assertEquals("<|im_start|>user\nQ<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\nr1\n</think>\n\nA1<|im_end|>\n"
                        + "<|im_start|>user\n<tool_response>\nx\n</tool_response><|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n",
                qwen3.render(messages, false, true));
    }

    @Test
    void reasoningIsTakenAfterTheLastThinkOpenAndBeforeTheFirstClose() {
        List<ChatMessage> messages = List.of(user("Q"), assistant("junk<think>a<think>\nb\n</think>mid</think>\n\nend"));
        assertEquals("<|im_start|>user\nQ<|im_end|>\n"
                        + "<|im_start|>assistant\n<think>\nb\n</think>\n\nend<|im_end|>\n",
                qwen3.render(messages, false, true));
    }

    @Test
    void laterSystemMessagesRenderInPlace() {
        List<ChatMessage> messages = List.of(user("Hi"), system("Now be formal."), user("Hello"));
        assertEquals("<|im_start|>user\nHi<|im_end|>\n"
                        + "<|im_start|>system\nNow be formal.<|im_end|>\n"
                        + "<|im_start|>user\nHello<|im_end|>\n"
                        + "<|im_start|>assistant\n",
                qwen3.render(messages, true, true));
    }

    @Test
    void withoutAnyUserQueryHistoryIsPlain() {
        List<ChatMessage> messages = List.of(system("S"), assistant("<think>r</think>A"));
        // the last query index defaults to the last message, so no assistant turn comes after it
        assertEquals("<|im_start|>system\nS<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
                qwen3.render(messages, false, true));
        assertEquals("<|im_start|>assistant\n", qwen3.render(List.of(), true, true));
    }

    @Test
    void unknownRolesAreRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> qwen3.render(List.of(new ChatMessage("developer", "x")), true, true));
        assertTrue(e.getMessage().contains("'developer'"), e.getMessage());
    }
}
