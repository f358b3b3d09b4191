package io.distca.cli;

import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.loadtest.HtmlReport;
import io.distca.loadtest.LoadReport;
import io.distca.loadtest.LoadTest;
import io.distca.loadtest.LoadTestOptions;
import io.distca.protocol.tensor.DType;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code distca loadtest}: options in, {@link LoadTest} run, summary / JSON / HTML out. */
@Command(name = "loadtest", mixinStandardHelpOptions = true, sortOptions = false,
    description = {
      "Drive simulated trainer ranks against an attention-server pool and report throughput, per-phase latency "
          + "(p50/p90/p99/p99.9/max), per-server load and imbalance, and roofline ratios. A sample of results is "
          + "checked against a local computation; a mismatch or a failed call exits with 1.",
      "Without --dispatcher an embedded cluster (dispatcher + servers on loopback) is started. The defaults suit a "
          + "small CPU machine; real model shapes (--model llama-8b) want GPU servers."})
final class LoadtestCommand implements Callable<Integer> {
  private static final LoadTestOptions DEFAULTS = new LoadTestOptions();

  @Spec
  CommandSpec spec;

  @Option(names = "--dispatcher", paramLabel = "HOST:PORT", description = "Existing cluster's dispatcher; omit to start an embedded cluster.")
  String dispatcher;

  @Option(names = "--servers", description = "Embedded attention servers (default: ${DEFAULT-VALUE}).")
  int servers = DEFAULTS.servers;

  @Option(names = "--backend", description = "Embedded servers' backend: auto, cpu, cuda, reference (default: ${DEFAULT-VALUE}).")
  String backend = DEFAULTS.backend;

  @Option(names = "--threads", description = "Compute threads per embedded CPU server; 0 splits the cores (default: ${DEFAULT-VALUE}).")
  int threads = DEFAULTS.computeThreads;

  @Option(names = "--planner", description = "Embedded dispatcher's planner: distca or greedy (default: ${DEFAULT-VALUE}).")
  String planner = DEFAULTS.planner;

  @Option(names = "--token", description = "Cluster token (default: $DISTCA_TOKEN or none).")
  String token = System.getenv().getOrDefault("DISTCA_TOKEN", "");

  @Mixin
  TlsFlags tls = new TlsFlags();

  @Option(names = "--ranks", description = "Simulated trainer ranks (default: ${DEFAULT-VALUE}).")
  int ranks = DEFAULTS.ranks;

  @Option(names = {"--workload", "--docs"}, paramLabel = "FILE|NAME",
      description = "JSON array of document lengths, or: " + DocLengthDistribution.KNOWN + " (default: ${DEFAULT-VALUE}).")
  String workload = DEFAULTS.workload;

  @Option(names = "--tokens-per-rank", description = "Token budget per rank per micro-batch, e.g. 8192 or 512k (default: ${DEFAULT-VALUE}).")
  String tokensPerRank = Integer.toString(DEFAULTS.tokensPerRank);

  @Option(names = "--shard-tokens", description = "Largest query shard (default: ${DEFAULT-VALUE}).")
  int shardTokens = DEFAULTS.shardTokens;

  @Option(names = "--model", description = "llama-8b, llama-34b or llama-70b: heads, KV heads, head_dim and layers (overrides the numbers below).")
  String model;

  @Option(names = "--heads", description = "Query heads (default: ${DEFAULT-VALUE}).")
  int heads = DEFAULTS.headsQ;

  @Option(names = "--kv-heads", description = "Key/value heads (default: ${DEFAULT-VALUE}).")
  int kvHeads = DEFAULTS.headsKv;

  @Option(names = "--head-dim", description = "Head dimension (default: ${DEFAULT-VALUE}).")
  int headDim = DEFAULTS.headDim;

  @Option(names = "--layers", description = "Attention layers per step (default: the model's, else 2).")
  int layers = DEFAULTS.layers;

  @Option(names = "--dtype", description = "bf16, fp16 or fp32 (default: ${DEFAULT-VALUE}).")
  String dtype = DEFAULTS.dtype.wireName();

  @Option(names = "--full", description = "Full (non-causal) attention instead of causal.")
  boolean full;

  @Option(names = "--forward-only", description = "Forward only (default: forward and backward).")
  boolean forwardOnly;

  @Option(names = "--steps", description = "Measured steps (default: ${DEFAULT-VALUE}).")
  int steps = DEFAULTS.steps;

  @Option(names = "--duration", description = "Run for this long instead of --steps, e.g. 30s, 5m, PT1M.")
  String duration;

  @Option(names = "--warmup", description = "Warm-up steps left out of every number (default: ${DEFAULT-VALUE}).")
  int warmup = DEFAULTS.warmupSteps;

  @Option(names = "--seed", description = "Seed of documents, values and the check sample (default: ${DEFAULT-VALUE}).")
  long seed = DEFAULTS.seed;

  @Option(names = "--check-fraction", description = "Fraction of layer calls checked against a local computation (default: ${DEFAULT-VALUE}).")
  double checkFraction = DEFAULTS.checkFraction;

  @Option(names = "--tolerance", description = "Largest relative error accepted (default: ${DEFAULT-VALUE}).")
  double tolerance = DEFAULTS.tolerance;

  @Option(names = "--check-backend",
      description = "Backend of the local reference: cpu, reference (float64), cuda, auto (default: ${DEFAULT-VALUE}).")
  String checkBackend = DEFAULTS.checkBackend;

  @Option(names = "--stall-timeout", paramLabel = "DURATION",
      description = "When no layer call completes for this long (time spent on local checks aside), print every "
          + "thread's stack and the servers' and clients' state, and fail (exit 1); 0 never (default: 10m).")
  String stallTimeout = "10m";

  @Option(names = "--progress", description = "Progress bar: auto (terminal only), on, off (default: ${DEFAULT-VALUE}).")
  String progress = DEFAULTS.progress;

  @Option(names = "--json", description = "Print the JSON report instead of the summary table.")
  boolean json;

  @Option(names = "--report", paramLabel = "DIR", description = "Write an HTML report with charts (and report.json) into DIR.")
  Path report;

  @Override
  public Integer call() throws Exception {
    LoadTestOptions o;
    try {
      o = options();
      o.conclude();
    } catch (IllegalArgumentException e) {
      throw new ParameterException(spec.commandLine(), e.getMessage(), e);
    }
    LoadReport r = LoadTest.run(o);
    PrintWriter out = spec.commandLine().getOut();
    out.print(json ? r.toJson() + System.lineSeparator() : r.summary());
    if (report != null) {
      Path index = HtmlReport.write(r, report);
      if (!json) {
        out.println("report: " + index.toAbsolutePath());
      }
    }
    out.flush();
    return r.exitCode();
  }

  private LoadTestOptions options() {
    LoadTestOptions o = new LoadTestOptions();
    o.dispatcher = dispatcher;
    o.servers = servers;
    o.backend = backend;
    o.computeThreads = threads;
    o.planner = planner;
    o.token = token;
    o.tls = tls.options();
    o.ranks = ranks;
    o.workload = workload;
    try {
      o.tokensPerRank = DocLengthDistribution.tokens(tokensPerRank);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--tokens-per-rank: not a token count: '" + tokensPerRank + "' (e.g. 8192 or 512k)");
    }
    o.shardTokens = shardTokens;
    o.model = model;
    o.headsQ = heads;
    o.headsKv = kvHeads;
    o.headDim = headDim;
    o.layers = layers;
    o.dtype = DType.fromWireName(dtype);
    if (o.dtype == null) {
      throw new IllegalArgumentException("--dtype must be bf16, fp16 or fp32, got '" + dtype + "'");
    }
    o.causal = !full;
    o.backward = !forwardOnly;
    o.steps = steps;
    o.duration = duration == null ? null : parseDuration(duration);
    o.warmupSteps = warmup;
    o.seed = seed;
    o.checkFraction = checkFraction;
    o.tolerance = tolerance;
    o.checkBackend = checkBackend;
    o.progress = progress;
    o.stallTimeout = stallTimeout.trim().equals("0") ? null : parseDuration(stallTimeout);
    // a stalled run that cannot even stop (a thread stuck in native code) must not hang the launcher
    o.haltAfterStall = Duration.ofMinutes(1);
    return o;
  }

  /** 30s, 5m, 1h, 500ms, or ISO-8601 (PT1M). */
  static Duration parseDuration(String text) {
    String t = text.trim().toLowerCase(Locale.ROOT);
    try {
      if (t.startsWith("pt")) {
        return Duration.parse(t.toUpperCase(Locale.ROOT));
      }
      if (t.endsWith("ms")) {
        return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2)));
      }
      long n = Long.parseLong(t.substring(0, t.length() - 1));
      switch (t.charAt(t.length() - 1)) {
        case 's':
          return Duration.ofSeconds(n);
        case 'm':
          return Duration.ofMinutes(n);
        case 'h':
          return Duration.ofHours(n);
        default:
          break;
      }
    } catch (NumberFormatException | DateTimeParseException | StringIndexOutOfBoundsException e) {
      // fall through to the typed error below
    }
    throw new IllegalArgumentException("--duration: '" + text + "' is not a duration (e.g. 30s, 5m, 1h, 500ms, PT1M)");
  }
}
