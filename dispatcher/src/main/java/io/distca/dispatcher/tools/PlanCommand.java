package io.distca.dispatcher.tools;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.GreedyPlanner;
import io.distca.dispatcher.plan.Plan;
import io.distca.dispatcher.plan.PlanInput;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.plan.Planner;
import io.distca.dispatcher.plan.ServerCapacity;
import io.distca.dispatcher.plan.ServerLoad;
import io.distca.dispatcher.plan.SplitStyle;
import io.distca.protocol.model.ModelSpec;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code distca plan}: plans one step offline and reports balance, bytes and planning time. */
@Command(name = "plan", mixinStandardHelpOptions = true,
    description = "Plan one training step's CA-tasks onto attention servers and report per-server load, "
        + "imbalance (max load / target), bytes on the wire against the lower bound, and planning time.")
public final class PlanCommand implements Callable<Integer> {

  @Spec
  CommandSpec spec;

  @Mixin
  WorkloadSource workload;

  @Option(names = "--tokens-per-rank", paramLabel = "TOKENS",
      description = "sample documents from --docs to fill this many tokens per rank (e.g. 512k); "
          + "default for a distribution: 512k; a file without it is planned as listed")
  String tokensPerRank;

  @Option(names = "--servers", defaultValue = "64", description = "attention servers (default: ${DEFAULT-VALUE})")
  int servers;

  @Option(names = "--ranks", description = "trainer ranks (default: as many as servers)")
  Integer ranks;

  @Option(names = "--tolerance", defaultValue = "0.05", description = "epsilon (default: ${DEFAULT-VALUE})")
  double tolerance;

  @Option(names = "--model", defaultValue = "llama-8b", description = "llama-8b, llama-34b or llama-70b (default: ${DEFAULT-VALUE})")
  String model;

  @Option(names = "--planner", defaultValue = "distca", description = "distca or greedy (default: ${DEFAULT-VALUE})")
  String planner;

  @Option(names = "--split-style", defaultValue = "prefix", description = "prefix or head-tail (default: ${DEFAULT-VALUE})")
  String splitStyle;

  @Option(names = "--min-shard", defaultValue = "" + PlanOptions.DEFAULT_MIN_SHARD_TOKENS,
      description = "fewest query rows of a split-off piece (default: ${DEFAULT-VALUE})")
  int minShard;

  @Option(names = "--max-shard", defaultValue = "" + PlanOptions.DEFAULT_MAX_SHARD_TOKENS,
      description = "greedy planner's shard size (default: ${DEFAULT-VALUE})")
  int maxShard;

  @Option(names = "--cut-align", defaultValue = "" + PlanOptions.DEFAULT_CUT_ALIGN_TOKENS,
      description = "cuts inside a document on multiples of this many tokens; at most --min-shard, 1 = anywhere"
          + " (default: ${DEFAULT-VALUE})")
  int cutAlign;

  @Option(names = "--server-tflops", split = ",", defaultValue = "330",
      description = "measured attention TFLOP/s per server, cycled over the servers (default: ${DEFAULT-VALUE})")
  double[] serverTflops;

  @Option(names = "--byte-budget", defaultValue = "0",
      description = "bytes per server per layer forward, 0 = unlimited (default: ${DEFAULT-VALUE})")
  long byteBudget;

  @Option(names = "--repeat", defaultValue = "1", description = "plan this many times and report min and median time (default: ${DEFAULT-VALUE})")
  int repeat;

  @Option(names = "--json", description = "print one JSON object")
  boolean json;

  static Planner planner(String name) {
    switch (name.toLowerCase(Locale.ROOT)) {
      case "distca":
        return new DistcaPlanner();
      case "greedy":
        return new GreedyPlanner();
      default:
        throw new IllegalArgumentException("unknown planner '" + name + "' (known: distca, greedy)");
    }
  }

  static SplitStyle splitStyle(String name) {
    switch (name.toLowerCase(Locale.ROOT)) {
      case "prefix":
        return SplitStyle.PREFIX;
      case "head-tail":
        return SplitStyle.HEAD_TAIL;
      default:
        throw new IllegalArgumentException("unknown split style '" + name + "' (known: prefix, head-tail)");
    }
  }

  @Override
  public Integer call() throws Exception {
    try {
      return run();
    } catch (IllegalArgumentException e) { // covers the workload's and the planner's typed input errors
      throw new ParameterException(spec.commandLine(), e.getMessage(), e);
    }
  }

  private int run() throws Exception {
    if (servers < 1) {
      throw new IllegalArgumentException("--servers must be >= 1, got " + servers);
    }
    if (repeat < 1) {
      throw new IllegalArgumentException("--repeat must be >= 1, got " + repeat);
    }
    int rankCount = ranks != null ? ranks : servers;
    if (rankCount < 1) {
      throw new IllegalArgumentException("--ranks must be >= 1, got " + rankCount);
    }
    ModelSpec modelSpec = ModelSpec.byName(model);
    List<int[]> docs;
    Long budget = null;
    if (tokensPerRank == null && workload.isFile()) {
      docs = workload.literal(rankCount);
    } else {
      budget = tokensPerRank == null ? 512 * 1024L : WorkloadSource.parseTokens(tokensPerRank);
      docs = workload.sample(rankCount, budget);
    }
    List<ServerCapacity> capacities = new ArrayList<>(servers);
    for (int s = 0; s < servers; s++) {
      double tflops = serverTflops[s % serverTflops.length];
      capacities.add(new ServerCapacity("server-" + s, tflops * 1e12, byteBudget));
    }
    PlanOptions options = new PlanOptions(minShard, maxShard, tolerance, PlanOptions.DEFAULT_TOLERANCE_STEP,
        Math.max(PlanOptions.DEFAULT_MAX_TOLERANCE, tolerance), splitStyle(splitStyle), cutAlign);
    PlanInput input = new PlanInput(modelSpec.attentionShape(), true, docs, capacities, options);
    Planner chosen = planner(planner);
    Plan plan = null;
    long[] nanos = new long[repeat];
    for (int i = 0; i < repeat; i++) {
      plan = chosen.plan(input);
      nanos[i] = plan.planNanos();
    }
    Arrays.sort(nanos);
    Map<String, Object> report = report(modelSpec, input, plan, budget, nanos);
    PrintWriter out = spec.commandLine().getOut();
    if (json) {
      out.println(new ObjectMapper().disable(SerializationFeature.FAIL_ON_EMPTY_BEANS).writeValueAsString(report));
    } else {
      printText(out, input, plan, report);
    }
    out.flush();
    return 0;
  }

  private Map<String, Object> report(ModelSpec modelSpec, PlanInput input, Plan plan, Long budget, long[] nanos) {
    Map<String, Object> report = new LinkedHashMap<>();
    report.put("planner", plan.planner());
    report.put("model", modelSpec.name());
    report.put("docs", workload.docs + (workload.upsampleLong ? " (long documents upsampled 2x)" : ""));
    report.put("servers", input.serverCount());
    report.put("ranks", input.ranks());
    report.put("tokensPerRank", budget);
    report.put("documents", input.docLengthsPerRank().stream().mapToInt(d -> d.length).sum());
    report.put("tokens", input.totalTokens());
    report.put("tolerance", input.options().tolerance());
    report.put("toleranceUsed", plan.toleranceUsed());
    report.put("imbalance", plan.imbalance());
    report.put("tasks", plan.taskCount());
    report.put("splitDocuments", plan.splitDocuments());
    report.put("forwardFlopsPerLayer", plan.totalFlops());
    report.put("bytesMoved", plan.bytesMoved());
    report.put("lowerBoundBytes", plan.lowerBoundBytes());
    report.put("bytesRatio", plan.bytesRatio());
    report.put("planMillis", nanos[0] / 1e6);
    report.put("planMillisMedian", nanos[nanos.length / 2] / 1e6);
    report.put("repeats", nanos.length);
    List<Map<String, Object>> loads = new ArrayList<>();
    for (ServerLoad load : plan.serverLoads()) {
      Map<String, Object> row = new LinkedHashMap<>();
      row.put("server", load.serverId());
      row.put("tasks", load.tasks());
      row.put("forwardFlops", load.forwardFlops());
      row.put("relativeLoad", load.relativeLoad());
      row.put("bytesIn", load.bytesIn());
      row.put("bytesOut", load.bytesOut());
      loads.add(row);
    }
    report.put("serverLoads", loads);
    return report;
  }

  private static void printText(PrintWriter out, PlanInput input, Plan plan, Map<String, Object> report) {
    out.printf(Locale.ROOT, "planner %s, model %s, docs %s%n", report.get("planner"), report.get("model"), report.get("docs"));
    out.printf(Locale.ROOT, "%d ranks, %d documents, %d tokens -> %d servers, %d tasks (%d documents split)%n",
        input.ranks(), (Integer) report.get("documents"), input.totalTokens(), input.serverCount(), plan.taskCount(),
        plan.splitDocuments());
    out.printf(Locale.ROOT, "%6s %-12s %7s %14s %10s %12s%n", "#", "server", "tasks", "fwd TFLOP", "load", "MB");
    for (ServerLoad load : plan.serverLoads()) {
      out.printf(Locale.ROOT, "%6d %-12s %7d %14.3f %10.4f %12.1f%n", load.server(), load.serverId(), load.tasks(),
          load.forwardFlops() / 1e12, load.relativeLoad(), load.bytes() / 1e6);
    }
    out.printf(Locale.ROOT, "imbalance (max load / target): %.4f at tolerance %.3f%n", plan.imbalance(), plan.toleranceUsed());
    out.printf(Locale.ROOT, "bytes moved per layer forward: %.1f MB, lower bound %.1f MB, ratio %.4f%n",
        plan.bytesMoved() / 1e6, plan.lowerBoundBytes() / 1e6, plan.bytesRatio());
    out.printf(Locale.ROOT, "planning time: %.2f ms (min of %d; median %.2f ms)%n", (Double) report.get("planMillis"),
        (Integer) report.get("repeats"), (Double) report.get("planMillisMedian"));
  }
}
