package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplate;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;

class ChatCommandTest {

    /** The statistics line printed after each reply. */
    private static final Pattern STATS = Pattern.compile(
            "\\[prompt: (\\d+) tokens, [^;]+; generated: (\\d+) tokens, [^;]+; stop: [a-z ]+; context: (\\d+)/(\\d+)]");

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    private static List<int[]> stats(CliRunner r) {
        List<int[]> all = new ArrayList<>();
        Matcher m = STATS.matcher(r.err());
        while (m.find()) {
            all.add(new int[] {Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))});
        }
        return all;
    }

    private static String line(String text) {
        return text.endsWith("\n") ? text : text + "\n";
    }

    @Test
    void twoTurnsKeepTheHistoryInTheCache() throws IOException {
        CliRunner r = CliRunner.runWithInput("Hello there\nWhat next?\n/exit\nnot read\n", "chat", "-m", model.toString(),
                "--temp", "0", "-n", "6", "--system", "Be brief.", "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        List<int[]> turns = stats(r);
        assertEquals(2, turns.size(), r.err());

        // the same conversation driven through the engine: one session, each turn only its new tokens
        try (Model m = Model.load(model, LoadOptions.defaults().withThreads(2)); Session s = m.newSession()) {
            ChatTemplate template = ChatTemplates.fromGguf(m.file().metadata());
            String endOfReply = ChatCommand.endOfAssistantTurn(template);
            Generator g = new Generator(s, new Sampler(SamplerSettings.greedy(), s.vocabularySize()), m.tokenizer());
            int[] first = m.tokenizer().encode(template.render(
                    List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hello there")), true, true));
            GenerationResult reply1 = g.generate(first, GenerationOptions.maxTokens(6), GenerationListener.NONE);
            int afterFirst = s.position();
            int[] second = m.tokenizer().encode(endOfReply + template.render(List.of(ChatMessage.user("What next?")),
                    true, true), false, true);
            GenerationResult reply2 = g.generate(second, GenerationOptions.maxTokens(6), GenerationListener.NONE);

            assertEquals(line(reply1.text()) + line(reply2.text()), r.out());
            assertEquals(first.length, turns.get(0)[0]);
            assertEquals(reply1.tokens().length, turns.get(0)[1]);
            assertEquals(afterFirst, turns.get(0)[2]);
            assertEquals(second.length, turns.get(1)[0], "the second turn evaluates only its own tokens");
            assertEquals(s.position(), turns.get(1)[2], "the context holds both turns");

            String whole = template.render(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hello there"),
                    ChatMessage.assistant(reply1.text()), ChatMessage.user("What next?")), true, true);
            assertTrue(second.length < m.tokenizer().encode(whole).length - first.length,
                    "fewer tokens than the conversation after the first turn");
        }
    }

    @Test
    void resetStartsOverAndEndOfInputQuits() {
        CliRunner r = CliRunner.runWithInput("Hi\n\n/unknown\n/reset\nHi\n", "chat", "-m", model.toString(), "--temp",
                "0", "-n", "4", "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        List<int[]> turns = stats(r);
        assertEquals(2, turns.size(), r.err());
        assertEquals(turns.get(0)[0], turns.get(1)[0], "after /reset the first message is evaluated as the first again");
        assertEquals(turns.get(0)[2], turns.get(1)[2]);
        assertTrue(r.err().contains("unknown command /unknown"), r.err());
        assertTrue(r.err().contains("(new conversation)"), r.err());
        String out = r.out();
        assertEquals(out.substring(0, out.length() / 2), out.substring(out.length() / 2),
                "greedy: the same first message after /reset gets the same reply");
    }

    @Test
    void aFullContextSaysSoAndSuggestsReset() {
        CliRunner r = CliRunner.runWithInput("Hello there, how are you today?\nAnd now?\n", "chat", "-m", model.toString(),
                "--temp", "0", "-c", "24", "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("the context is full"), r.err());
        assertTrue(r.err().contains("/reset"), r.err());
    }

    @Test
    void endOfAssistantTurnFollowsTheTemplate() {
        assertEquals("<|im_end|>\n", ChatCommand.endOfAssistantTurn(ChatTemplates.chatMl()));
        assertEquals("<|im_end|>\n", ChatCommand.endOfAssistantTurn(ChatTemplates.qwen3()));
    }
}
