package moe4j.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import picocli.CommandLine.Option;

/** The text to work on: given inline ({@code -p}) or read from a UTF-8 file ({@code -f}); exactly one. */
final class PromptSource {

    @Option(names = {"-p", "--prompt"}, paramLabel = "TEXT", required = true, description = "the text")
    String text;

    @Option(names = {"-f", "--file"}, paramLabel = "FILE", required = true,
            description = "read the text from a UTF-8 file (used as is, final newline included)")
    Path file;

    /** The text, read from the file when one was given. */
    String read() throws IOException {
        if (file == null) {
            return text;
        }
        byte[] bytes = Files.readAllBytes(file);
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new IOException(file + " is not UTF-8 text", e);
        }
    }
}
