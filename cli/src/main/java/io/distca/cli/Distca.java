package io.distca.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of {@code bin/distca}: one launcher for every DistCA service and tool. */
@Command(
    name = "distca",
    mixinStandardHelpOptions = true,
    version = "DistCA 0.1.0",
    description = "Core attention disaggregation: attention servers, dispatcher, trainer client and tools.",
    subcommands = {
      ServerCommand.class,
      DispatcherCommand.class,
      DemoCommand.class,
      AttnCommand.class,
      BenchCommand.class,
      LoadtestCommand.class,
      SoakCommand.class,
      io.distca.dispatcher.tools.PlanCommand.class,
      io.distca.dispatcher.tools.SimulateCommand.class,
      CommandLine.HelpCommand.class
    })
public final class Distca implements Runnable {
  @CommandLine.Spec
  CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  public static CommandLine commandLine() {
    return new CommandLine(new Distca()).setCaseInsensitiveEnumValuesAllowed(true)
        .setExecutionExceptionHandler(Distca::configurationError);
  }

  /**
   * A command that fails on what it was given (a GPU the machine does not have, a backend that
   * cannot run here, a setting out of range: IllegalArgumentException or IllegalStateException; a
   * port another process holds: an UncheckedIOException of a BindException) prints the reason on one
   * line and exits with 1; anything else keeps its stack trace. With DISTCA_DEBUG set, every failure
   * keeps it.
   */
  private static int configurationError(Exception e, CommandLine cmd, CommandLine.ParseResult parsed) throws Exception {
    boolean configuration = e instanceof IllegalArgumentException || e instanceof IllegalStateException
        || (e instanceof java.io.UncheckedIOException u && u.getCause() instanceof java.net.BindException);
    if (!configuration || System.getenv("DISTCA_DEBUG") != null) {
      throw e;
    }
    cmd.getErr().println(cmd.getCommandSpec().qualifiedName() + ": " + e.getMessage());
    cmd.getErr().flush();
    return cmd.getExitCodeExceptionMapper() != null ? cmd.getExitCodeExceptionMapper().getExitCode(e)
        : cmd.getCommandSpec().exitCodeOnExecutionException();
  }
}
