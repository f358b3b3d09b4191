package io.distca.dispatcher.tools;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.sim.KernelThroughputTable;
import io.distca.dispatcher.sim.Layout;
import io.distca.dispatcher.sim.SimulationSettings;
import io.distca.dispatcher.sim.SpeedupChart;
import io.distca.dispatcher.sim.StepEstimate;
import io.distca.dispatcher.sim.StepSimulator;
import io.distca.dispatcher.sim.TrainingModel;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
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

/** {@code distca simulate}: step time of colocated against disaggregated attention across scale. */
@Command(name = "simulate", mixinStandardHelpOptions = true,
    description = "Simulate training steps: (a) colocated attention with WLB-style packing, where the slowest "
        + "rank sets the pace, against (b) disaggregated attention placed by the planner, for every combination of "
        + "model, tokens per rank and server count. Prints a table; --plot draws the speedups. The cost model is "
        + "documented in docs/ARCHITECTURE.md (Scheduler) and in StepSimulator.")
public final class SimulateCommand implements Callable<Integer> {

  @Spec
  CommandSpec spec;

  @Mixin
  WorkloadSource workload;

  @Option(names = "--servers", split = ",", defaultValue = "8,16,32,64,128,256,512",
      description = "attention server counts (default: ${DEFAULT-VALUE})")
  int[] servers;

  @Option(names = "--ranks", description = "trainer ranks for --layout pool (default: as many as servers)")
  Integer ranks;

  @Option(names = "--layout", defaultValue = "in-place",
      description = "in-place (each GPU one rank and one server, the paper's) or pool (separate server GPUs) (default: ${DEFAULT-VALUE})")
  String layout;

  @Option(names = "--tokens-per-rank", split = ",", defaultValue = "64k,128k,256k,512k",
      description = "tokens per rank (default: ${DEFAULT-VALUE})")
  String[] tokensPerRank;

  @Option(names = "--model", split = ",", defaultValue = "llama-8b,llama-34b", description = "models (default: ${DEFAULT-VALUE})")
  String[] models;

  @Option(names = "--bandwidth-gbps", defaultValue = "50", description = "network GB/s per GPU and direction (default: ${DEFAULT-VALUE})")
  double bandwidthGbps;

  @Option(names = "--linear-tflops", defaultValue = "400", description = "achieved TFLOP/s of the linear parts (default: ${DEFAULT-VALUE})")
  double linearTflops;

  @Option(names = "--kernel-table", paramLabel = "FILE",
      description = "JSON {qLens, kvLens, tflops} of measured attention throughput (default: an assumed H100 table)")
  Path kernelTable;

  @Option(names = "--tolerance", defaultValue = "0.05", description = "planner epsilon (default: ${DEFAULT-VALUE})")
  double tolerance;

  @Option(names = "--planner", defaultValue = "distca", description = "distca or greedy (default: ${DEFAULT-VALUE})")
  String planner;

  @Option(names = "--wlb-window", defaultValue = "8", description = "ranks per WLB packing window (default: ${DEFAULT-VALUE})")
  int wlbWindow;

  @Option(names = "--wlb-token-slack", defaultValue = "0.1",
      description = "WLB may give a rank this much more than the average tokens (default: ${DEFAULT-VALUE})")
  double wlbTokenSlack;

  @Option(names = "--plot", paramLabel = "FILE", description = "write the speedup plot here (.png or .svg)")
  Path plot;

  @Option(names = "--json", description = "print one JSON object")
  boolean json;

  @Override
  public Integer call() throws Exception {
    try {
      return run();
    } catch (IllegalArgumentException e) {
      throw new ParameterException(spec.commandLine(), e.getMessage(), e);
    }
  }

  private int run() throws Exception {
    Layout chosenLayout = layout(layout);
    KernelThroughputTable kernels = kernelTable != null ? KernelThroughputTable.fromJson(kernelTable) : KernelThroughputTable.assumedH100();
    PlanOptions options = PlanOptions.defaults().withTolerance(tolerance);
    SimulationSettings settings = SimulationSettings.defaults()
        .withHardware(linearTflops * 1e12, bandwidthGbps * 1e9, kernels)
        .withPlanner(PlanCommand.planner(planner), options)
        .withPacking(wlbWindow, wlbTokenSlack, chosenLayout);
    if (chosenLayout == Layout.IN_PLACE && ranks != null) {
      throw new IllegalArgumentException("--ranks only applies to --layout pool (in place, ranks = servers)");
    }
    StepSimulator simulator = new StepSimulator(settings);
    List<StepEstimate> estimates = new ArrayList<>();
    for (String modelName : models) {
      TrainingModel model = TrainingModel.byName(modelName);
      for (String tokens : tokensPerRank) {
        long budget = WorkloadSource.parseTokens(tokens);
        for (int serverCount : servers) {
          if (serverCount < 1) {
            throw new IllegalArgumentException("--servers must be >= 1, got " + serverCount);
          }
          int rankCount = ranks != null ? ranks : serverCount;
          estimates.add(simulator.simulate(model, workload.sample(rankCount, budget), serverCount));
        }
      }
    }
    if (plot != null) {
      SpeedupChart.write(estimates, plot);
    }
    PrintWriter out = spec.commandLine().getOut();
    if (json) {
      Map<String, Object> report = new LinkedHashMap<>();
      report.put("docs", workload.docs + (workload.upsampleLong ? " (long documents upsampled 2x)" : ""));
      report.put("layout", chosenLayout.name());
      report.put("bandwidthGBps", bandwidthGbps);
      report.put("linearTflops", linearTflops);
      report.put("tolerance", tolerance);
      report.put("planner", planner);
      report.put("plot", plot == null ? null : plot.toString());
      List<Map<String, Object>> rows = new ArrayList<>();
      for (StepEstimate estimate : estimates) {
        Map<String, Object> row = new LinkedHashMap<>();
        row.put("model", estimate.model());
        row.put("tokensPerRank", estimate.tokensPerRank());
        row.put("servers", estimate.servers());
        row.put("ranks", estimate.ranks());
        row.put("gpus", estimate.gpus());
        row.put("colocatedSeconds", estimate.colocatedSeconds());
        row.put("disaggregatedSeconds", estimate.disaggregatedSeconds());
        row.put("speedup", estimate.speedup());
        row.put("speedupPerGpu", estimate.speedupPerGpu());
        row.put("colocatedImbalance", estimate.colocatedImbalance());
        row.put("planImbalance", estimate.planImbalance());
        row.put("bytesRatio", estimate.bytesRatio());
        row.put("commBoundShare", estimate.commBoundShare());
        row.put("planMillis", estimate.planMillis());
        rows.add(row);
      }
      report.put("steps", rows);
      out.println(new ObjectMapper().writeValueAsString(report));
    } else {
      printTable(out, estimates, chosenLayout);
    }
    out.flush();
    return 0;
  }

  private static Layout layout(String name) {
    switch (name.toLowerCase(Locale.ROOT)) {
      case "in-place":
        return Layout.IN_PLACE;
      case "pool":
        return Layout.POOL;
      default:
        throw new IllegalArgumentException("unknown layout '" + name + "' (known: in-place, pool)");
    }
  }

  private void printTable(PrintWriter out, List<StepEstimate> estimates, Layout chosenLayout) {
    out.printf(Locale.ROOT, "docs %s, layout %s, %.0f GB/s per GPU, linear %.0f TFLOP/s, tolerance %.3f, planner %s%n",
        workload.docs + (workload.upsampleLong ? " (long upsampled 2x)" : ""), chosenLayout, bandwidthGbps, linearTflops,
        tolerance, planner);
    out.printf(Locale.ROOT, "%-10s %8s %7s %6s %12s %12s %8s %8s %9s %9s %8s %6s%n", "model", "tok/rank", "servers", "ranks",
        "coloc s", "disagg s", "speedup", "per-GPU", "coloc imb", "plan imb", "bytes", "comm");
    for (StepEstimate e : estimates) {
      out.printf(Locale.ROOT, "%-10s %7dK %7d %6d %12.3f %12.3f %8.3f %8.3f %9.3f %9.4f %8.4f %6.2f%n", e.model(),
          e.tokensPerRank() / 1024, e.servers(), e.ranks(), e.colocatedSeconds(), e.disaggregatedSeconds(), e.speedup(),
          e.speedupPerGpu(), e.colocatedImbalance(), e.planImbalance(), e.bytesRatio(), e.commBoundShare());
    }
    double low = estimates.stream().mapToDouble(StepEstimate::speedup).min().orElse(Double.NaN);
    double high = estimates.stream().mapToDouble(StepEstimate::speedup).max().orElse(Double.NaN);
    out.printf(Locale.ROOT, "speedup %.2f-%.2fx across these cells; the paper reports %.2f-%.2fx end to end%n", low, high,
        SpeedupChart.PAPER_LOW, SpeedupChart.PAPER_HIGH);
    if (plot != null) {
      out.println("plot written to " + plot);
    }
  }
}
