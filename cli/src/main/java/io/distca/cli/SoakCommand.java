package io.distca.cli;

import io.distca.loadtest.LoadTestOptions;
import io.distca.loadtest.soak.Soak;
import io.distca.loadtest.soak.SoakReport;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code distca soak}: a long load test on an embedded cluster, watching this process's resources for growth. */
@Command(name = "soak", mixinStandardHelpOptions = true,
    description = "Run the load test for a set time and report whether heap, direct memory, RSS, threads or file descriptors grew.")
final class SoakCommand implements Callable<Integer> {
  @Option(names = "--minutes", description = "How long (default: ${DEFAULT-VALUE}).")
  double minutes = 30;

  @Option(names = "--sample-seconds", description = "Sampling interval (default: ${DEFAULT-VALUE}).")
  double sampleSeconds = 10;

  @Option(names = "--backend", description = "cpu, cuda or auto (default: ${DEFAULT-VALUE}).")
  String backend = "auto";

  @Option(names = "--ranks", description = "Trainer ranks (default: ${DEFAULT-VALUE}).")
  int ranks = 2;

  @Option(names = "--servers", description = "Attention servers (default: ${DEFAULT-VALUE}).")
  int servers = 2;

  @Option(names = "--tokens-per-rank", description = "Tokens per rank per micro-batch (default: ${DEFAULT-VALUE}).")
  int tokensPerRank = 4096;

  @Override
  public Integer call() throws Exception {
    LoadTestOptions o = new LoadTestOptions();
    o.backend = backend;
    o.ranks = ranks;
    o.servers = servers;
    o.tokensPerRank = tokensPerRank;
    SoakReport r = Soak.run(o, Duration.ofMillis((long) (minutes * 60_000)), (long) (sampleSeconds * 1000));
    System.out.print(r.text());
    return r.loadPassed() && !r.grew() ? 0 : 1;
  }
}
