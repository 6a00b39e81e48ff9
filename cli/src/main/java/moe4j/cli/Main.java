package moe4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.util.Properties;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.ParseResult;

/**
 * The {@code moe4j} command line. Exit codes: 0 success, 1 the command failed (bad file, I/O error...),
 * 2 invalid usage. A failure prints one line {@code moe4j: error: ...} on stderr; {@code --verbose} adds the
 * stack trace.
 */
@Command(name = "moe4j",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = "Pure-Java inference for Mixture-of-Experts models stored as GGUF files.",
        subcommands = {GenerateCommand.class, ChatCommand.class, ServeCommand.class, TokenizeCommand.class, LogitsCommand.class, EmbedCommand.class, BenchCommand.class,
                InfoCommand.class, PlanCommand.class, MakeTestModelCommand.class, CommandLine.HelpCommand.class},
        footerHeading = "%nExit codes:%n",
        footer = {"  0  success", "  1  the command failed (unreadable or invalid file, I/O error)", "  2  invalid usage"})
public final class Main implements Runnable {

    static final int EXIT_FAILURE = 1;
    static final int EXIT_USAGE = 2;
    static final String VERBOSE = "--verbose";

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The configured command line; callers may redirect its output with {@code setOut}/{@code setErr}. */
    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        cl.setExitCodeExceptionMapper(e -> EXIT_FAILURE);
        cl.setExecutionExceptionHandler(Main::reportFailure);
        cl.setParameterExceptionHandler(Main::reportUsageError);
        return cl;
    }

    /** Without a subcommand: print usage. */
    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    private static int reportFailure(Exception e, CommandLine cmd, ParseResult parseResult) {
        PrintWriter err = cmd.getErr();
        err.println("moe4j: error: " + oneLine(describe(e)));
        if (isVerbose(parseResult)) {
            e.printStackTrace(err);
        }
        err.flush();
        return EXIT_FAILURE;
    }

    private static int reportUsageError(CommandLine.ParameterException e, String[] args) {
        CommandLine cmd = e.getCommandLine();
        PrintWriter err = cmd.getErr();
        err.println("moe4j: error: " + oneLine(e.getMessage()) + " (see '" + cmd.getCommandSpec().qualifiedName()
                + " --help')");
        err.flush();
        return EXIT_USAGE;
    }

    /** A message for the user: file-system exceptions only carry the path, so say what went wrong with it. */
    static String describe(Throwable e) {
        return switch (e) {
            case NoSuchFileException n when n.getReason() == null -> "file not found: " + n.getFile();
            case AccessDeniedException a when a.getReason() == null -> "permission denied: " + a.getFile();
            case FileSystemException f when f.getReason() != null -> f.getFile() + ": " + f.getReason();
            default -> e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
        };
    }

    private static String oneLine(String message) {
        return message.strip().replaceAll("\\s*\\R\\s*", " ");
    }

    private static boolean isVerbose(ParseResult parseResult) {
        for (ParseResult r = parseResult; r != null; r = r.subcommand()) {
            if (r.hasMatchedOption(VERBOSE)) {
                return true;
            }
        }
        return false;
    }

    /** Version from the build (filtered resource), plus the Java runtime it runs on. */
    static final class Version implements IVersionProvider {
        @Override
        public String[] getVersion() throws IOException {
            Properties p = new Properties();
            try (InputStream in = Main.class.getResourceAsStream("version.properties")) {
                if (in != null) {
                    p.load(in);
                }
            }
            return new String[] {
                    "moe4j " + p.getProperty("version", "(unknown version)"),
                    "Java " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ", "
                            + System.getProperty("java.vendor") + ")"
            };
        }
    }
}
