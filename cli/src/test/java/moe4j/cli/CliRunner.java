package moe4j.cli;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;

/** Runs the command line in-process, capturing what it prints. */
record CliRunner(int exitCode, String out, String err) {

    static CliRunner run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = Main.commandLine().setOut(new PrintWriter(out)).setErr(new PrintWriter(err)).execute(args);
        return new CliRunner(code, out.toString(), err.toString());
    }

    /** As {@link #run}, with {@code stdin} as standard input (e.g. a scripted chat). */
    static CliRunner runWithInput(String stdin, String... args) {
        InputStream saved = System.in;
        System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
        try {
            return run(args);
        } finally {
            System.setIn(saved);
        }
    }

    /** The error output's lines. */
    String[] errLines() {
        return err.isEmpty() ? new String[0] : err.split("\\R");
    }

    /** The error output's lines that report a failure ({@code moe4j: error: ...}). */
    long errorLineCount() {
        return java.util.Arrays.stream(errLines()).filter(l -> l.startsWith("moe4j: error: ")).count();
    }

    /** The last line of the error output. */
    String lastErrLine() {
        String[] lines = errLines();
        return lines.length == 0 ? "" : lines[lines.length - 1];
    }
}
