package io.distca.dispatcher.sim;

import io.distca.dispatcher.plan.Plan;
import io.distca.dispatcher.plan.PlanInput;
import io.distca.dispatcher.plan.ServerCapacity;
import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import java.util.ArrayList;
import java.util.List;

/**
 * Estimates one training step's time, colocated against disaggregated. The model (also in
 * docs/ARCHITECTURE.md, Scheduler section):
 *
 * <ul>
 *   <li>Linear parts cost {@code 2 * params} FLOPs per token forward and twice that backward, at
 *       {@code linearFlopsPerSecond}; the LM head likewise.
 *   <li>Attention costs {@link CostModel} FLOPs (backward 2.5x forward) at the kernel table's
 *       throughput for each task's (query rows, keys); a colocated document is one task.
 *   <li>Colocated: documents WLB-packed across the ranks of a window ({@link WlbPacker}); ranks
 *       meet only at the step's end, so the step is the slowest rank's sum over layers.
 *   <li>Disaggregated: ranks keep their token-balanced packing; every layer's attention is an
 *       all-to-all exchange, so each layer waits for its slowest GPU. Transfers run at
 *       {@code networkBytesPerSecond} per GPU and direction (a GPU's own tasks in place never touch
 *       the wire); backward re-sends Q, K, V, O, LSE and dO and returns dQ, dK, dV. Ping-pong with
 *       two nano-batches overlaps one's transfer with the other's compute, and the pipeline runs on
 *       from layer to layer: a layer of compute C and transfer X takes {@code max(C, X)}, and each
 *       pass (forward, backward) pays once to fill the pipeline, {@code min(C, X) / 2}. In a pool,
 *       rank and server are different GPUs and the three stages (rank compute, wire, server
 *       compute) overlap the same way: {@code max} of the three per layer, half the others to fill.
 *   <li>Left out, identical in both: gradient all-reduce, optimizer, embedding, launch overheads.
 *       Leaving out common costs makes both times shorter and the ratio somewhat larger.
 * </ul>
 */
public final class StepSimulator {
  private final SimulationSettings settings;

  public StepSimulator(SimulationSettings settings) {
    this.settings = settings;
  }

  public StepEstimate simulate(TrainingModel model, List<int[]> docsPerRank, int servers) {
    int ranks = docsPerRank.size();
    if (settings.layout() == Layout.IN_PLACE && ranks != servers) {
      throw new IllegalArgumentException(
          "in-place layout hosts one server per rank: ranks (" + ranks + ") must equal servers (" + servers + ")");
    }
    long tokensPerRank = 0;
    for (int length : docsPerRank.get(0)) {
      tokensPerRank += length;
    }
    double[] colocated = colocatedRankSeconds(model, docsPerRank);
    double slowest = 0;
    double mean = 0;
    for (double seconds : colocated) {
      slowest = Math.max(slowest, seconds);
      mean += seconds / ranks;
    }

    AttentionShape shape = model.attention().attentionShape();
    List<ServerCapacity> capacities = new ArrayList<>(servers);
    double serverFlops = settings.kernels().peakFlopsPerSecond();
    for (int s = 0; s < servers; s++) {
      capacities.add(ServerCapacity.unlimited("server-" + s, serverFlops));
    }
    Plan plan = settings.planner().plan(new PlanInput(shape, true, docsPerRank, capacities, settings.planOptions()));
    Disaggregated step = disaggregatedSeconds(model, docsPerRank, plan, servers);
    int gpus = settings.layout() == Layout.IN_PLACE ? ranks : ranks + servers;
    return new StepEstimate(model.name(), ranks, servers, tokensPerRank, slowest, step.seconds, slowest / mean,
        plan.imbalance(), plan.bytesRatio(), step.commBoundShare, plan.planNanos() / 1e6, gpus);
  }

  /** Forward seconds of one layer's linear parts for {@code tokens} tokens. */
  private double linearForwardSeconds(TrainingModel model, long tokens) {
    return tokens * model.linearForwardFlopsPerTokenPerLayer() / settings.linearFlopsPerSecond();
  }

  private double headSeconds(TrainingModel model, long tokens) {
    return 3 * tokens * model.headForwardFlopsPerToken() / settings.linearFlopsPerSecond();
  }

  private double attentionForwardSeconds(AttentionShape shape, long q, long kvLen, long diagonal) {
    double flops = CostModel.forwardFlops(q, kvLen, shape.headsQ(), shape.headDim(), true, diagonal);
    return flops / settings.kernels().flopsPerSecond(q, kvLen);
  }

  /** Whole step per rank, colocated: layers x (forward + backward) plus the LM head. */
  private double[] colocatedRankSeconds(TrainingModel model, List<int[]> docsPerRank) {
    AttentionShape shape = model.attention().attentionShape();
    int layers = model.attention().layers();
    List<int[]> packed = WlbPacker.pack(docsPerRank, settings.wlbWindowRanks(), settings.wlbTokenSlack(), length ->
        3 * linearForwardSeconds(model, length) + 3.5 * attentionForwardSeconds(shape, length, length, 0));
    double[] seconds = new double[packed.size()];
    for (int r = 0; r < packed.size(); r++) {
      long tokens = 0;
      double attention = 0;
      for (int length : packed.get(r)) {
        tokens += length;
        attention += attentionForwardSeconds(shape, length, length, 0);
      }
      seconds[r] = layers * (3 * linearForwardSeconds(model, tokens) + 3.5 * attention) + headSeconds(model, tokens);
    }
    return seconds;
  }

  private record Disaggregated(double seconds, double commBoundShare) {}

  private Disaggregated disaggregatedSeconds(TrainingModel model, List<int[]> docsPerRank, Plan plan, int servers) {
    AttentionShape shape = model.attention().attentionShape();
    int ranks = docsPerRank.size();
    boolean inPlace = settings.layout() == Layout.IN_PLACE;
    double[] attention = new double[servers];
    // bytes crossing the wire per layer, forward: into/out of each rank and each server
    long[] rankOut = new long[ranks];
    long[] rankIn = new long[ranks];
    long[] serverIn = new long[servers];
    long[] serverOut = new long[servers];
    // backward moves (Q + KV + dO + LSE + delta) in and (dQ + dKV) out: forward's bytes plus these
    // extras (dO and two fp32 row statistics; delta = rowsum(dO * O) replaces O, docs/protocol.md)
    long[] rankOutBackwardExtra = new long[ranks];
    long[] serverInBackwardExtra = new long[servers];
    for (int r = 0; r < ranks; r++) {
      List<PlannedTask> tasks = plan.tasksOf(r);
      int from = 0;
      while (from < tasks.size()) {
        int to = from;
        while (to < tasks.size() && tasks.get(to).doc() == tasks.get(from).doc()) {
          to++;
        }
        for (int i = from; i < to; i++) {
          PlannedTask task = tasks.get(i);
          int q = task.qEnd() - task.qStart();
          int server = task.server();
          attention[server] += attentionForwardSeconds(shape, q, task.kvEnd() - task.kvStart(), task.qStart() - task.kvStart());
          if (inPlace && server == r) {
            continue; // its own GPU: no wire
          }
          long queryBytes = CostModel.forwardBytesIn(q, 0, shape);
          long outputBytes = CostModel.forwardBytesOut(q, shape);
          long kvBytes = kvBytesOnce(tasks, from, to, i, shape);
          rankOut[r] += queryBytes + kvBytes;
          serverIn[server] += queryBytes + kvBytes;
          serverOut[server] += outputBytes;
          rankIn[r] += outputBytes;
          long rowStatisticsBytes = 2 * 4L * q * shape.headsQ();
          rankOutBackwardExtra[r] += queryBytes + rowStatisticsBytes;
          serverInBackwardExtra[server] += queryBytes + rowStatisticsBytes;
        }
        from = to;
      }
    }
    long tokensPerRank = 0;
    for (int length : docsPerRank.get(0)) {
      tokensPerRank += length;
    }
    double linear = linearForwardSeconds(model, tokensPerRank);
    double bandwidth = settings.networkBytesPerSecond();
    double forward = 0;
    double backward = 0;
    double fill = 0;
    int commBound = 0;
    int phases = 0;
    if (inPlace) {
      double forwardFill = 0;
      double backwardFill = 0;
      for (int g = 0; g < ranks; g++) {
        // forward: egress = rank's Q, K, V + server's O, LSE; ingress the mirror. Backward: the rank
        // sends forward's inputs plus dO, LSE, delta and receives dQ, dK, dV (= its forward inputs)
        double forwardWire = Math.max(rankOut[g] + serverOut[g], rankIn[g] + serverIn[g]) / bandwidth;
        double backwardWire = Math.max(rankOut[g] + rankOutBackwardExtra[g] + serverIn[g],
            rankOut[g] + serverIn[g] + serverInBackwardExtra[g]) / bandwidth;
        double forwardCompute = linear + attention[g];
        double backwardCompute = 2 * linear + 2.5 * attention[g];
        forward = Math.max(forward, Math.max(forwardCompute, forwardWire));
        backward = Math.max(backward, Math.max(backwardCompute, backwardWire));
        forwardFill = Math.max(forwardFill, Math.min(forwardCompute, forwardWire) / 2);
        backwardFill = Math.max(backwardFill, Math.min(backwardCompute, backwardWire) / 2);
        commBound += (forwardWire > forwardCompute ? 1 : 0) + (backwardWire > backwardCompute ? 1 : 0);
        phases += 2;
      }
      fill = forwardFill + backwardFill;
    } else {
      double maxAttention = 0;
      double maxWire = 0;
      double maxBackwardWire = 0;
      for (int s = 0; s < servers; s++) {
        maxAttention = Math.max(maxAttention, attention[s]);
        maxWire = Math.max(maxWire, Math.max(serverIn[s], serverOut[s]) / bandwidth);
        maxBackwardWire = Math.max(maxBackwardWire, (serverIn[s] + serverInBackwardExtra[s]) / bandwidth);
      }
      for (int r = 0; r < ranks; r++) {
        maxWire = Math.max(maxWire, Math.max(rankOut[r], rankIn[r]) / bandwidth);
        maxBackwardWire = Math.max(maxBackwardWire, (rankOut[r] + rankOutBackwardExtra[r]) / bandwidth);
      }
      forward = Math.max(linear, Math.max(maxWire, maxAttention));
      backward = Math.max(2 * linear, Math.max(maxBackwardWire, 2.5 * maxAttention));
      fill = (linear + maxWire + maxAttention - forward) / 2
          + (2 * linear + maxBackwardWire + 2.5 * maxAttention - backward) / 2;
      commBound += (maxWire > Math.max(linear, maxAttention) ? 1 : 0)
          + (maxBackwardWire > Math.max(2 * linear, 2.5 * maxAttention) ? 1 : 0);
      phases = 2;
    }
    int layers = model.attention().layers();
    double seconds = layers * (forward + backward) + fill + headSeconds(model, tokensPerRank);
    return new Disaggregated(seconds, (double) commBound / phases);
  }

  /**
   * K/V bytes task {@code i} adds on its server: its document's tasks [from, to) on one server share
   * the longest prefix among them, charged to the first of them in order.
   */
  private static long kvBytesOnce(List<PlannedTask> tasks, int from, int to, int i, AttentionShape shape) {
    PlannedTask task = tasks.get(i);
    int longest = 0;
    for (int j = from; j < to; j++) {
      PlannedTask other = tasks.get(j);
      if (other.server() == task.server()) {
        if (j < i) {
          return 0; // an earlier task of this document on this server carries the K/V
        }
        longest = Math.max(longest, other.kvEnd() - other.kvStart());
      }
    }
    return CostModel.forwardBytesIn(0, longest, shape);
  }
}
