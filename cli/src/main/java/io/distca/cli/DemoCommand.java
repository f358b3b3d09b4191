package io.distca.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distca.loadtest.Demo;
import io.distca.loadtest.EmbeddedCluster;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code distca demo}: the whole system end to end on an embedded loopback cluster, checked. */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Start a dispatcher, attention servers and trainer clients on loopback; run checked forward and backward steps.")
final class DemoCommand implements Callable<Integer> {
  private static final Demo.Options DEFAULTS = new Demo.Options();

  @Option(names = "--steps", description = "Training steps (default: ${DEFAULT-VALUE}).")
  int steps = DEFAULTS.steps;

  @Option(names = "--ranks", description = "Trainer ranks (clients) (default: ${DEFAULT-VALUE}).")
  int ranks = DEFAULTS.ranks;

  @Option(names = "--servers", description = "Attention servers (default: ${DEFAULT-VALUE}).")
  int servers = DEFAULTS.servers;

  @Option(names = "--tokens-per-rank", description = "Tokens per rank per micro-batch (default: ${DEFAULT-VALUE}).")
  int tokensPerRank = DEFAULTS.tokensPerRank;

  @Option(names = "--heads", description = "Query heads (default: ${DEFAULT-VALUE}).")
  int heads = DEFAULTS.headsQ;

  @Option(names = "--kv-heads", description = "Key/value heads (default: ${DEFAULT-VALUE}).")
  int kvHeads = DEFAULTS.headsKv;

  @Option(names = "--head-dim", description = "Head dimension (default: ${DEFAULT-VALUE}).")
  int headDim = DEFAULTS.headDim;

  @Option(names = "--shard-tokens", description = "Largest query shard (default: ${DEFAULT-VALUE}).")
  int shardTokens = DEFAULTS.shardTokens;

  @Option(names = "--backend", description = "Server backend: cpu, cuda, auto (default: ${DEFAULT-VALUE}).")
  String backend = DEFAULTS.backend;

  @Option(names = "--planner", description = "distca or greedy (default: ${DEFAULT-VALUE}).")
  String planner = DEFAULTS.planner;

  @Option(names = "--seed", description = "Random seed (default: ${DEFAULT-VALUE}).")
  long seed = DEFAULTS.seed;

  @Option(names = "--json", description = "Print one JSON object instead of text.")
  boolean json;

  @Override
  public Integer call() throws Exception {
    Demo.Options o = new Demo.Options();
    o.steps = steps;
    o.ranks = ranks;
    o.servers = servers;
    o.tokensPerRank = tokensPerRank;
    o.headsQ = heads;
    o.headsKv = kvHeads;
    o.headDim = headDim;
    o.shardTokens = shardTokens;
    o.backend = backend;
    o.planner = planner;
    o.seed = seed;
    if (!json) {
      System.out.printf("DistCA demo: dispatcher + %d attention servers + %d trainer clients on loopback%n", servers, ranks);
      System.out.printf("  %d steps x %d tokens per rank, pretrain document lengths, heads %d/%d, head_dim %d, bf16, causal%n",
          steps, tokensPerRank, heads, kvHeads, headDim);
    }
    Demo.Report r = Demo.run(o);
    if (json) {
      System.out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(r.toMap()));
    } else {
      System.out.printf("  backend %s; %d documents -> %d CA-tasks in %d requests; plan imbalance %.3f; %d fused batches; %d retries%n",
          r.backend(), r.documents(), r.tasks(), r.requests(), r.imbalance(), r.fusedBatches(), r.retries());
      System.out.printf("  servers on: %s%n", EmbeddedCluster.describeDevices(r.serverDevices()));
      System.out.printf("  forward : %.2f s, %.1f GFLOP/s%n", r.forwardSeconds(), r.forwardGflops());
      System.out.printf("  backward: %.2f s, %.1f GFLOP/s%n", r.backwardSeconds(), r.backwardGflops());
      System.out.printf("  throughput: %.0f tokens/s (forward + backward)%n", r.tokensPerSecond());
      System.out.printf("  max relative error vs local reference: O %.2e, LSE %.2e, dQ %.2e, dK %.2e, dV %.2e%n",
          r.maxErrorO(), r.maxErrorLse(), r.maxErrorDq(), r.maxErrorDk(), r.maxErrorDv());
      System.out.println(r.passed() ? "PASS" : "FAIL: results differ from the local reference beyond " + o.tolerance);
    }
    return r.passed() ? 0 : 1;
  }
}
