package moe4j.gguf;

import java.io.IOException;
import java.nio.file.Path;

/** A GGUF file is malformed: says which file, at which byte, and what is wrong. */
public class GgufFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    private final transient Path file;
    private final long offset;
    private final String problem;

    public GgufFormatException(Path file, long offset, String problem) {
        super(file + ": at byte " + offset + ": " + problem);
        this.file = file;
        this.offset = offset;
        this.problem = problem;
    }

    public Path file() { return file; }

    /** Byte offset in {@link #file()} of the field (or record) that is wrong. */
    public long offset() { return offset; }

    /** The message without file and offset. */
    public String problem() { return problem; }
}
