package io.distca.loadtest.jmh;

import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.GreedyPlanner;
import io.distca.dispatcher.plan.Plan;
import io.distca.dispatcher.plan.PlanInput;
import io.distca.dispatcher.plan.ReferenceDistcaPlanner;
import io.distca.dispatcher.plan.ServerCapacity;
import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.ModelSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Planning time of one step on one thread: {@link DistcaPlanner} against
 * {@link ReferenceDistcaPlanner}, the same greedy written the straightforward way (boxed sort,
 * linear scan for the least loaded server), which produces the identical plan; the simple
 * {@link GreedyPlanner} alongside. Inputs: Llama-3-8B shapes, as many ranks as servers, documents
 * sampled (seed 1) to fill {@code tokensPerRank} per rank. The target is 512 servers x 512K tokens
 * per rank in under 50 ms.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Threads(1)
@Fork(value = 1, jvmArgsAppend = {"-Xmx2g"})
public class PlannerBenchmark {
  @Param({"64", "512"})
  public int servers;

  @Param({"524288"})
  public int tokensPerRank;

  @Param({"pretrain", "longtail"})
  public String docs;

  private PlanInput input;
  private final DistcaPlanner distca = new DistcaPlanner();
  private final ReferenceDistcaPlanner reference = new ReferenceDistcaPlanner();
  private final GreedyPlanner greedy = new GreedyPlanner();

  @Setup(Level.Trial)
  public void setUp() {
    List<int[]> ranks = DocLengthDistribution.byName(docs).sampleRanks(servers, tokensPerRank, 1);
    List<ServerCapacity> capacities = new ArrayList<>();
    for (int s = 0; s < servers; s++) {
      capacities.add(ServerCapacity.unlimited("server-" + s, 330e12));
    }
    input = new PlanInput(ModelSpec.LLAMA_3_8B.attentionShape(), true, ranks, capacities);
    Plan fast = distca.plan(input);
    if (!fast.samePlacementAs(reference.plan(input))) {
      throw new IllegalStateException("the reference implementation no longer makes the same plan");
    }
  }

  @Benchmark
  public Plan distca() {
    return distca.plan(input);
  }

  @Benchmark
  public Plan distcaReference() {
    return reference.plan(input);
  }

  @Benchmark
  public Plan greedy() {
    return greedy.plan(input);
  }
}
