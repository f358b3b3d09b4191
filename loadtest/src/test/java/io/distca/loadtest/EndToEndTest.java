package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.AttentionServer;
import io.distca.server.backend.ReferenceAttention;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The whole data path over loopback TCP: a dispatcher, two attention servers and three trainer
 * clients planning together; forward and backward results checked against the float64 reference
 * run locally on whole documents; and the cluster still serves after a client sends garbage.
 * Closing the root allocator at the end fails the test on any leaked buffer.
 */
class EndToEndTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));

  @Test
  void causalAndFullAttentionThroughTheClusterMatchTheReference() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(2);
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
        cluster.awaitReady(20_000);
        List<DistcaClient> clients = new ArrayList<>();
        try (ReferenceAttention reference = new ReferenceAttention()) {
          connect(cluster, "e2e", 3, root, clients);
          // document mixes with the edge cases: single tokens, lengths off the block size, and
          // documents longer than a shard so that they are cut into several CA-tasks
          int[][] docs = {{700, 1, 129, 37}, {513, 256, 3}, {1, 1, 900}};
          for (boolean causal : new boolean[] {true, false}) {
            runStep(clients, reference, root, docs, causal, causal ? 1 : 2);
          }
          long fused = 0;
          for (AttentionServer s : cluster.servers()) {
            assertTrue(s.tasksServed() > 0, s.serverId() + " served no task: the plan did not spread work");
            fused += s.fusedRequests();
          }
          assertTrue(fused > 0);
        } finally {
          for (DistcaClient c : clients) {
            c.close();
          }
        }
      }
    }
  }

  /** {@code ranks} trainer clients of job {@code job} on the cluster's dispatcher (shards of 256 tokens), into {@code clients}. */
  static void connect(EmbeddedCluster cluster, String job, int ranks, BufferAllocator root, List<DistcaClient> clients) {
    for (int r = 0; r < ranks; r++) {
      clients.add(new DistcaClient(clientContext(cluster, job, r, ranks), root));
    }
  }

  /** Rank {@code rank} of {@code ranks} of job {@code job} on the cluster's dispatcher, shards of 256 tokens. */
  static ClientContext clientContext(EmbeddedCluster cluster, String job, int rank, int ranks) {
    ClientContext cc = new ClientContext();
    cc.dispatcherPort = cluster.dispatcherPort();
    cc.job = job;
    cc.rank = rank;
    cc.worldSize = ranks;
    cc.shardTokens = 256;
    return cc;
  }

  /**
   * One forward and backward of every client's micro-batch, checked against the local reference:
   * O to 1e-2, LSE to 1e-3, the gradients to 2e-2 (relative to the largest magnitude).
   */
  static void runStep(List<DistcaClient> clients, ReferenceAttention reference, BufferAllocator root,
      int[][] docs, boolean causal, long step) {
    try {
      new CheckedStep(clients, reference, root, Duration.ofSeconds(60)).run(step, SHAPE, causal, docs, 0)
          .requireWithin(1e-2, 1e-3, 2e-2, 2e-2, 2e-2);
    } catch (Exception e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void badRequestGetsATypedErrorAndTheServerKeepsServing() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(1);
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
        cluster.awaitReady(20_000);
        int port = cluster.servers().get(0).port();
        EventLoopGroup group = Transports.group(1, "test");
        try (PeerConnection c = PeerConnection.connect(group, "127.0.0.1", port, new Hello(1, "trainer", "t", ""),
            WireSetup.client(root), Duration.ofSeconds(5)).get(10, TimeUnit.SECONDS)) {
          // kv_len beyond its segment
          ExecutionException bad = assertThrows(ExecutionException.class,
              () -> c.request(request(root, 16, 16, 17, false)).get(10, TimeUnit.SECONDS));
          ProtocolException pe = assertInstanceOf(ProtocolException.class, bad.getCause());
          assertEquals(ErrorCode.INVALID_CU_SEQLENS, pe.code());
          assertEquals("tasks[0].kv_len", pe.field());
          // NaN in q
          ExecutionException nan = assertThrows(ExecutionException.class,
              () -> c.request(request(root, 16, 16, 16, true)).get(10, TimeUnit.SECONDS));
          assertEquals(ErrorCode.NON_FINITE_INPUT, ((ProtocolException) nan.getCause()).code());
          assertEquals("q", ((ProtocolException) nan.getCause()).field());
          // the same connection still gets a correct answer
          try (Message ok = c.request(request(root, 16, 16, 16, false)).get(10, TimeUnit.SECONDS)) {
            assertEquals(MessageType.FORWARD_RESPONSE, ok.type());
            assertEquals(16, ok.tensors().get("o").dim(0));
          }
        } finally {
          group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
        }
      }
    }
  }

  private static Message request(BufferAllocator root, int q, int kv, int kvLen, boolean poison) {
    SplittableRandom rnd = new SplittableRandom(5);
    TensorSet set = new TensorSet();
    Tensor qt = CheckedStep.random(root, rnd, SHAPE.dtype(), q, SHAPE.headsQ(), SHAPE.headDim());
    if (poison) {
      qt.setFloat(3, Float.NaN);
    }
    set.put("q", qt);
    set.put("k", CheckedStep.random(root, rnd, SHAPE.dtype(), kv, SHAPE.headsKv(), SHAPE.headDim()));
    set.put("v", CheckedStep.random(root, rnd, SHAPE.dtype(), kv, SHAPE.headsKv(), SHAPE.headDim()));
    AttentionRequest meta = new AttentionRequest("e2e", 0, 0, SHAPE.headsQ(), SHAPE.headsKv(), SHAPE.headDim(), "bf16",
        SHAPE.scale(), List.of(new TaskSpec(0, 0, q, 0, 0, kvLen, true, kvLen - q)), new int[] {kv});
    return Message.of(MessageType.FORWARD_REQUEST, 0, meta, set);
  }
}
