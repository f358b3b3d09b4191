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
    return new CommandLine(new Distca()).setCaseInsensitiveEnumValuesAllowed(true);
  }
}
