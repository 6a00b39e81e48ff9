package moe4j.cli;

/** Whether the process talks to a person at a terminal (in-place progress, colours, prompts). */
final class Terminal {

    static final String FAINT = "\u001b[2m";
    static final String NORMAL_INTENSITY = "\u001b[22m";
    static final String CLEAR_LINE = "\r\u001b[K";

    private Terminal() {}

    /** True when standard input and output are a terminal (never for redirected or captured streams). */
    static boolean isInteractive() {
        return System.console() != null && System.console().isTerminal();
    }
}
