package io.distca.loadtest;

import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import io.distca.protocol.tensor.DType;
import io.distca.server.AttentionServer;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * {@code distca demo}: an embedded cluster on loopback (a dispatcher, attention servers, trainer
 * clients), several training steps of forward and backward core attention over documents drawn
 * from the pretrain length distribution, every result checked against a local unsharded
 * computation. Exits non-zero on a mismatch.
 */
public final class Demo {

  /** Demo settings; the defaults finish in about a minute on two cores with the CPU backend. */
  public static final class Options {
    public int steps = 3;
    public int ranks = 2;
    public int servers = 2;
    public int tokensPerRank = 4096;
    public int headsQ = 4;
    public int headsKv = 2;
    public int headDim = 64;
    public DType dtype = DType.BF16;
    public boolean causal = true;
    public int shardTokens = 1024;
    public String backend = "auto";
    public String planner = "distca";
    public long seed = 42;
    /** Largest relative error (max |x - ref| / max |ref|) accepted; bf16 outputs round at ~4e-3. */
    public double tolerance = 2e-2;
  }

  /** What a demo run did, printed as text or JSON. */
  public record Report(
      int steps, int ranks, int servers, String backend, List<String> serverDevices, long tokens, int documents,
      int tasks, int requests,
      double forwardSeconds, double backwardSeconds, double forwardFlops, double backwardFlops,
      double maxErrorO, double maxErrorLse, double maxErrorDq, double maxErrorDk, double maxErrorDv,
      long retries, long fusedBatches, double imbalance, boolean passed) {

    public double tokensPerSecond() {
      return tokens / (forwardSeconds + backwardSeconds);
    }

    public double forwardGflops() {
      return forwardFlops / forwardSeconds / 1e9;
    }

    public double backwardGflops() {
      return backwardFlops / backwardSeconds / 1e9;
    }

    public Map<String, Object> toMap() {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("steps", steps);
      m.put("ranks", ranks);
      m.put("servers", servers);
      m.put("backend", backend);
      m.put("server_devices", serverDevices);
      m.put("tokens", tokens);
      m.put("documents", documents);
      m.put("tasks", tasks);
      m.put("requests", requests);
      m.put("forward_seconds", forwardSeconds);
      m.put("backward_seconds", backwardSeconds);
      m.put("tokens_per_second", tokensPerSecond());
      m.put("forward_gflops", forwardGflops());
      m.put("backward_gflops", backwardGflops());
      m.put("max_error_o", maxErrorO);
      m.put("max_error_lse", maxErrorLse);
      m.put("max_error_dq", maxErrorDq);
      m.put("max_error_dk", maxErrorDk);
      m.put("max_error_dv", maxErrorDv);
      m.put("retries", retries);
      m.put("fused_batches", fusedBatches);
      m.put("plan_imbalance", imbalance);
      m.put("passed", passed);
      return m;
    }
  }

  private Demo() {}

  public static Report run(Options o) throws Exception {
    AttentionShape shape = new AttentionShape(o.headsQ, o.headsKv, o.headDim, o.dtype, AttentionShape.defaultScale(o.headDim));
    String problem = shape.problem();
    if (problem != null) {
      throw new IllegalArgumentException(problem);
    }
    DocLengthDistribution docs = DocLengthDistribution.pretrain();
    try (BufferAllocator root = new RootAllocator();
        AttentionBackend reference = new CpuBackend(new CpuBackendOptions())) {
      EmbeddedCluster.Options co = new EmbeddedCluster.Options();
      co.servers = o.servers;
      co.backend = o.backend;
      co.planner = o.planner;
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
        cluster.awaitReady(30_000);
        List<DistcaClient> clients = new ArrayList<>();
        try {
          for (int r = 0; r < o.ranks; r++) {
            ClientContext cc = new ClientContext();
            cc.dispatcherHost = "127.0.0.1";
            cc.dispatcherPort = cluster.dispatcherPort();
            cc.job = "demo";
            cc.rank = r;
            cc.worldSize = o.ranks;
            cc.shardTokens = o.shardTokens;
            clients.add(new DistcaClient(cc, root));
          }
          return runSteps(o, shape, docs, clients, cluster, reference, root);
        } finally {
          for (DistcaClient c : clients) {
            c.close();
          }
        }
      }
    }
  }

  private static Report runSteps(Options o, AttentionShape shape, DocLengthDistribution dist, List<DistcaClient> clients,
      EmbeddedCluster cluster, AttentionBackend reference, BufferAllocator root) throws Exception {
    CheckedStep checked = new CheckedStep(clients, reference, root, Duration.ofMinutes(10));
    double fwdSeconds = 0;
    double bwdSeconds = 0;
    double fwdFlops = 0;
    double[] err = new double[CheckedStep.TENSORS.size()];
    long tokens = 0;
    int documents = 0;
    int tasks = 0;
    int requests = 0;
    double imbalance = 0;
    for (int step = 0; step < o.steps; step++) {
      int[][] docs = new int[o.ranks][];
      for (int r = 0; r < o.ranks; r++) {
        docs[r] = dist.fillRank(o.tokensPerRank, new SplittableRandom(o.seed * 1_000_003L + step * 1009L + r));
        documents += docs[r].length;
        for (int len : docs[r]) {
          fwdFlops += CostModel.forwardFlops(len, len, shape.headsQ(), shape.headDim(), o.causal);
        }
      }
      CheckedStep.Result res = checked.run(step, shape, o.causal, docs, o.seed);
      fwdSeconds += res.forwardSeconds();
      bwdSeconds += res.backwardSeconds();
      tokens += res.tokens();
      tasks += res.tasks();
      requests += res.requests();
      imbalance = Math.max(imbalance, res.planImbalance());
      for (int i = 0; i < err.length; i++) {
        err[i] = Math.max(err[i], res.errors()[i]);
      }
    }
    double bwdFlops = 2.5 * fwdFlops;
    long retries = 0;
    for (DistcaClient c : clients) {
      retries += c.retries();
    }
    long batchesRun = 0;
    for (AttentionServer srv : cluster.servers()) {
      batchesRun += srv.batches();
    }
    boolean passed = true;
    for (double e : err) {
      passed &= e <= o.tolerance;
    }
    String backendName = cluster.servers().get(0).backend().name();
    return new Report(o.steps, o.ranks, o.servers, backendName, cluster.serverDevices(), tokens, documents, tasks, requests, fwdSeconds,
        bwdSeconds, fwdFlops, bwdFlops, err[0], err[1], err[2], err[3], err[4], retries, batchesRun, imbalance,
        passed);
  }
}
