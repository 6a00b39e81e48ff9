package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.tokenizer.Tokenizer;
import moe4j.gguf.GgufFile;

class TokenizeCommandTest {

    private static final String TEXT = "<|im_start|>user\nHello, wörld! 12345 <|im_end|>\n";
    /** Each token of an ASCII text is whole characters, so its pieces spell it. */
    private static final String ASCII_TEXT = "<|im_start|>user\nHello, world!\t12345<|im_end|>\n";

    @TempDir
    static Path dir;
    static Path model;
    static Tokenizer tokenizer;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
        try (GgufFile f = GgufFile.open(model)) {
            tokenizer = Tokenizer.fromGguf(f.metadata());
        }
    }

    private static int[] parseIds(String line) {
        return Arrays.stream(line.strip().split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    @Test
    void printsTheIdsOfTokenizerEncode() throws IOException {
        int[] expected = tokenizer.encode(TEXT);
        assertTrue(Arrays.stream(expected).anyMatch(id -> id == tokenizer.find("<|im_start|>").getAsInt()),
                "special tokens in the text are parsed");

        CliRunner inline = CliRunner.run("tokenize", "-m", model.toString(), "-p", TEXT);
        assertEquals(0, inline.exitCode(), inline.err());
        assertArrayEquals(expected, parseIds(inline.out()));

        Path file = dir.resolve("prompt.txt");
        Files.writeString(file, TEXT, StandardCharsets.UTF_8);
        CliRunner fromFile = CliRunner.run("tokenize", "-m", model.toString(), "--file", file.toString());
        assertEquals(inline.out(), fromFile.out());
    }

    @Test
    void jsonAndPieces() throws IOException {
        int[] expected = tokenizer.encode(ASCII_TEXT);
        ObjectMapper mapper = new ObjectMapper();

        CliRunner json = CliRunner.run("tokenize", "-m", model.toString(), "-p", ASCII_TEXT, "--json");
        assertEquals(0, json.exitCode(), json.err());
        assertArrayEquals(expected, mapper.readValue(json.out(), int[].class));

        CliRunner pieces = CliRunner.run("tokenize", "-m", model.toString(), "-p", ASCII_TEXT, "--json", "--show-pieces");
        JsonNode array = mapper.readTree(pieces.out());
        assertEquals(expected.length, array.size());
        StringBuilder joined = new StringBuilder();
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], array.get(i).get("id").asInt());
            joined.append(array.get(i).get("piece").asText());
        }
        assertEquals(ASCII_TEXT, joined.toString(), "the pieces (special tokens rendered) spell the text");

        CliRunner lines = CliRunner.run("tokenize", "-m", model.toString(), "-p", ASCII_TEXT, "--show-pieces");
        String[] rows = lines.out().split("\n");
        assertEquals(expected.length, rows.length);
        assertEquals(expected[0] + "\t'<|im_start|>'", rows[0]);
        assertTrue(lines.out().contains("\t'\\n'"), "line breaks are escaped: " + lines.out());
    }

    @Test
    void badInput() throws IOException {
        CliRunner missing = CliRunner.run("tokenize", "-m", dir.resolve("none.gguf").toString(), "-p", "x");
        assertEquals(1, missing.exitCode());
        assertEquals(1, missing.errLines().length, missing.err());
        assertTrue(missing.err().startsWith("moe4j: error: file not found: "), missing.err());

        Path latin1 = dir.resolve("latin1.txt");
        Files.write(latin1, new byte[] {'c', 'a', 'f', (byte) 0xE9});
        CliRunner notUtf8 = CliRunner.run("tokenize", "-m", model.toString(), "-f", latin1.toString());
        assertEquals(1, notUtf8.exitCode());
        assertEquals("moe4j: error: " + latin1 + " is not UTF-8 text", notUtf8.lastErrLine());

        CliRunner none = CliRunner.run("tokenize", "-m", model.toString());
        assertEquals(2, none.exitCode());
    }
}
