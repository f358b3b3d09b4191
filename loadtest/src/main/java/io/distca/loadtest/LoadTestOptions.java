package io.distca.loadtest;

import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.ModelSpec;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tls.TlsOptions;
import io.distca.server.backend.AttentionBackend;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.function.IntFunction;

/**
 * Every setting of a load test, with documented defaults; {@link #conclude()} validates them once
 * and resolves the model shape and the workload. The defaults are sized for a small CPU-only
 * machine (two cores run them in well under a minute); real model shapes and 100K+ token budgets
 * are for GPU servers.
 */
public final class LoadTestOptions {
  /** Largest token budget per rank per micro-batch (the paper's longest context). */
  public static final int MAX_TOKENS_PER_RANK = 512 * 1024;

  // ---- cluster
  /** Existing dispatcher as host:port; null starts an embedded cluster in this process. */
  public String dispatcher;
  /** Attention servers of the embedded cluster. */
  public int servers = 2;
  /** Backend of the embedded servers: auto (CUDA when there, else CPU), cpu, cuda, reference. */
  public String backend = "auto";
  /** Compute threads per embedded CPU server; 0 splits the machine's cores evenly. */
  public int computeThreads = 0;
  /** Planner of the embedded dispatcher: distca or greedy. */
  public String planner = "distca";
  /** Shared token of the cluster (HELLO); empty when it runs without authentication. */
  public String token = "";
  /**
   * TLS of the simulated trainers' connections; when it has a certificate and key, the embedded
   * cluster's ports speak TLS with it too. Null: plaintext.
   */
  public TlsOptions tls;
  /** Embedded cluster only: makes server i's backend instead of {@link #backend} (tests plant a wrong server). */
  public IntFunction<AttentionBackend> backendFactory;

  // ---- trainers and workload
  /** Simulated trainer ranks: one thread and one DistcaClient each. */
  public int ranks = 2;
  /** Document lengths: a distribution name (see {@link DocLengthDistribution#KNOWN}) or a JSON file of lengths. */
  public String workload = "pretrain";
  /** Tokens per rank per micro-batch, at most {@link #MAX_TOKENS_PER_RANK}. */
  public int tokensPerRank = 4096;
  /** Largest query shard the planner may cut. */
  public int shardTokens = 1024;
  /** Same seed, same documents, tensors, plans and spot-check sample. */
  public long seed = 42;

  // ---- model
  /** A model by name (llama-8b, llama-34b, llama-70b): heads, KV heads, head_dim and layers; null uses the numbers below. */
  public String model;
  public int headsQ = 4;
  public int headsKv = 2;
  public int headDim = 64;
  /** Attention layers per step (each one forward, and backward, with the step's plan); 0 takes the model's count, else 2. */
  public int layers = 0;
  public DType dtype = DType.BF16;
  public boolean causal = true;
  /** Forward and backward; false runs forward only. */
  public boolean backward = true;

  // ---- length of the run
  /** Measured steps; ignored when {@link #duration} is set. */
  public int steps = 3;
  /** Run measured steps until this much time has passed (the step under way finishes); null uses {@link #steps}. */
  public Duration duration;
  /** Steps run first and left out of every number (JIT, connections, pools). */
  public int warmupSteps = 1;

  // ---- correctness
  /** Fraction of layer calls whose results are compared with a local computation (plus each rank's first). */
  public double checkFraction = 0.1;
  /** Largest relative error (max |x - ref| / max |ref|) accepted; bf16 outputs round at about 4e-3. */
  public double tolerance = 2e-2;
  /**
   * Backend of the local reference: cpu (default), reference (float64, slow), cuda or auto. A local
   * CUDA backend keeps checks of real model shapes fast on a GPU machine (the CPU needs minutes per
   * Llama-8B layer of 16K tokens); it is still independent of sharding, wire, rebatching and merging,
   * but shares the servers' kernel code.
   */
  public String checkBackend = "cpu";

  // ---- stalls
  /**
   * When no layer call of any rank completes for this long, the run is declared stalled: every
   * thread's stack and the state of the servers (admitted bytes, requests in flight, queued tasks,
   * batches) and clients (requests, quarantined servers, pending requests, calls in progress) are
   * printed to {@link #diagnostics}, the ranks are stopped and the run fails. Null or zero: never.
   * The default is longer than a client's step deadline (5 minutes), so that a call that can fail
   * with its own typed error does so first.
   */
  public Duration stallTimeout = Duration.ofMinutes(10);
  /**
   * After a stall, how long the run may take to stop before the process is halted (exit status 3)
   * with a second thread dump; null waits as long as it takes (tests, embedding). The launcher sets it.
   */
  public Duration haltAfterStall;
  /** Where a stall's diagnostic goes. */
  public java.io.PrintStream diagnostics = System.err;

  // ---- output
  /** Live progress bar: auto (only when the console is a terminal), on, off. */
  public String progress = "auto";

  private AttentionShape shape;
  private DocLengthDistribution distribution;
  private String host;
  private int port;
  private boolean concluded;

  public LoadTestOptions conclude() {
    if (concluded) {
      return this;
    }
    if (dispatcher != null) {
      int colon = dispatcher.lastIndexOf(':');
      require(colon > 0, "--dispatcher must be host:port, got '" + dispatcher + "'");
      host = dispatcher.substring(0, colon);
      try {
        port = Integer.parseInt(dispatcher.substring(colon + 1));
      } catch (NumberFormatException e) {
        port = -1;
      }
      require(port > 0 && port < 65536, "--dispatcher port must be in [1, 65535], got '" + dispatcher + "'");
      require(backendFactory == null, "a backend factory applies to the embedded cluster only, not with --dispatcher");
    } else {
      require(servers >= 1, "servers must be >= 1, got " + servers);
      require(computeThreads >= 0, "computeThreads must be >= 0, got " + computeThreads);
      require(planner.equals("distca") || planner.equals("greedy"), "planner must be distca or greedy, got " + planner);
    }
    require(ranks >= 1, "ranks must be >= 1, got " + ranks);
    require(tokensPerRank >= 1 && tokensPerRank <= MAX_TOKENS_PER_RANK,
        "tokens per rank must be in [1, " + MAX_TOKENS_PER_RANK + "], got " + tokensPerRank);
    require(shardTokens >= 128, "shard tokens must be >= 128, got " + shardTokens);
    if (model != null) {
      ModelSpec spec = ModelSpec.byName(model);
      headsQ = spec.headsQ();
      headsKv = spec.headsKv();
      headDim = spec.headDim();
      dtype = spec.dtype();
      if (layers == 0) {
        layers = spec.layers();
      }
    } else if (layers == 0) {
      layers = 2;
    }
    require(layers >= 1, "layers must be >= 1, got " + layers);
    require(dtype == DType.BF16 || dtype == DType.FP16 || dtype == DType.FP32, "dtype must be bf16, fp16 or fp32, got " + dtype);
    shape = new AttentionShape(headsQ, headsKv, headDim, dtype, AttentionShape.defaultScale(headDim));
    String problem = shape.problem();
    require(problem == null, "model shape: " + problem);
    if (duration != null) {
      require(!duration.isNegative() && !duration.isZero(), "duration must be positive, got " + duration);
    } else {
      require(steps >= 1, "steps must be >= 1, got " + steps);
    }
    require(warmupSteps >= 0, "warm-up steps must be >= 0, got " + warmupSteps);
    require(stallTimeout == null || !stallTimeout.isNegative(), "stall timeout must be >= 0, got " + stallTimeout);
    require(haltAfterStall == null || !haltAfterStall.isNegative(), "halt after stall must be >= 0, got " + haltAfterStall);
    require(checkFraction >= 0 && checkFraction <= 1, "check fraction must be in [0, 1], got " + checkFraction);
    require(tolerance > 0 && Double.isFinite(tolerance), "tolerance must be positive, got " + tolerance);
    require(List.of("cpu", "reference", "cuda", "auto").contains(checkBackend),
        "check backend must be cpu, reference, cuda or auto, got " + checkBackend);
    progress = progress.toLowerCase(Locale.ROOT);
    require(progress.equals("auto") || progress.equals("on") || progress.equals("off"),
        "progress must be auto, on or off, got " + progress);
    distribution = resolveWorkload(workload);
    concluded = true;
    return this;
  }

  /** An existing file is read as a JSON array of lengths; anything else must name a distribution. */
  static DocLengthDistribution resolveWorkload(String spec) {
    require(spec != null && !spec.isBlank(), "workload must be a distribution name or a JSON file");
    Path file = Path.of(spec);
    if (Files.isRegularFile(file)) {
      return DocLengthDistribution.fromJsonFile(file);
    }
    require(DocLengthDistribution.isKnownName(spec),
        "workload '" + spec + "' is neither a file nor a distribution (known: " + DocLengthDistribution.KNOWN + ")");
    return DocLengthDistribution.byName(spec);
  }

  public AttentionShape shape() {
    checkConcluded();
    return shape;
  }

  public DocLengthDistribution distribution() {
    checkConcluded();
    return distribution;
  }

  public boolean embedded() {
    return dispatcher == null;
  }

  String dispatcherHost() {
    checkConcluded();
    return host;
  }

  int dispatcherPort() {
    checkConcluded();
    return port;
  }

  private void checkConcluded() {
    if (!concluded) {
      throw new IllegalStateException("options not concluded");
    }
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new IllegalArgumentException(message);
    }
  }
}
