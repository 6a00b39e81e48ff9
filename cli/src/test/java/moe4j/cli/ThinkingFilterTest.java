package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;

import org.junit.jupiter.api.Test;

class ThinkingFilterTest {

    /** Feeds the pieces; returns the text with reasoning in [brackets]. */
    private static String split(List<String> pieces) {
        StringBuilder b = new StringBuilder();
        ThinkingFilter f = new ThinkingFilter((text, thinking) -> b.append(thinking ? "[" + text + "]" : text));
        pieces.forEach(f::accept);
        f.finish();
        return b.toString().replace("][", "");
    }

    @Test
    void marksReasoningWithItsTags() {
        assertEquals("[<think>\nhmm\n</think>]\n\nAnswer.", split(List.of("<think>\nhmm\n</think>\n\nAnswer.")));
        assertEquals("no reasoning", split(List.of("no reasoning")));
    }

    @Test
    void tagsSplitAcrossPiecesAreRecognized() {
        assertEquals("a[<think>b</think>]c", split(List.of("a<", "thi", "nk>b</", "think", ">c")));
        assertEquals("[<think>x</think>]y", split(List.of("<", "t", "h", "i", "n", "k", ">", "x", "<", "/", "think>", "y")));
    }

    @Test
    void somethingThatOnlyLooksLikeATagIsText() {
        assertEquals("a <b> <thin x", split(List.of("a <b> <thi", "n x")));
        assertEquals("ends with <thi", split(List.of("ends with <thi")));
        assertEquals("[<think>unfinished]", split(List.of("<think>unfinished")));
    }
}
