package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.client.DistcaException;
import io.distca.client.MicroBatch;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.OwnedTensors;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import io.distca.server.backend.ReferenceAttention;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * Requests larger than a frame limit, the cause of the Llama-8B load test that stalled on an H100
 * (16K tokens per rank: one document's backward request encoded to 300 MB against the client's
 * 256 MiB frame limit; the encoder's refusal was taken for a lost connection and retried, idle,
 * until the step deadline). Here the same at a size two cores compute: documents of 2K tokens
 * against 1 MiB limits. The client cuts its work into requests that fit the limit its servers
 * advertise and its own, splitting a task's query rows when needed, and gets results equal to the
 * reference; what cannot be cut fails at once with a typed error.
 */
class FrameLimitTest {
  private static final long MIB = 1 << 20;
  /** The shape {@link EndToEndTest#runStep} uses. */
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));

  /** The embedded cluster of two CPU servers, each server's context adjusted by {@code server}, and its clients. */
  private static final class Cluster implements AutoCloseable {
    final EmbeddedCluster cluster;

    Cluster(BufferAllocator root, Consumer<ServerContext> server) throws InterruptedException {
      EmbeddedCluster.Options options = EmbeddedCluster.Options.cpu(2);
      options.serverContext = server;
      cluster = new EmbeddedCluster(options, root);
      try {
        cluster.awaitReady(20_000);
      } catch (RuntimeException | InterruptedException e) {
        cluster.close();
        throw e;
      }
    }

    List<DistcaClient> clients(BufferAllocator root, int ranks, Consumer<ClientContext> client) {
      List<DistcaClient> clients = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        ClientContext cc = new ClientContext();
        cc.dispatcherPort = cluster.dispatcherPort();
        cc.job = "frames";
        cc.rank = r;
        cc.worldSize = ranks;
        // bounded, so that a client that keeps sending what cannot be taken fails instead of
        // retrying until the step deadline (which is what the stalled load test did)
        cc.maxAttempts = 3;
        client.accept(cc);
        clients.add(new DistcaClient(cc, root));
      }
      return clients;
    }

    @Override
    public void close() {
      cluster.close();
    }
  }

  private static void closeAll(List<DistcaClient> clients) {
    for (DistcaClient c : clients) {
      c.close();
    }
  }

  @Test
  void requestsAboveTheServersFrameLimitAreCutToFitAndMatchTheReference() throws Exception {
    try (BufferAllocator root = new RootAllocator();
        Cluster cluster = new Cluster(root, sc -> sc.maxFrameBytes = MIB);
        ReferenceAttention reference = new ReferenceAttention()) {
      List<DistcaClient> clients = cluster.clients(root, 2, cc -> { });
      try {
        // a document of 2048 tokens: its forward request is 1 MiB of tensors, its backward 2 MiB
        int[][] docs = {{2048}, {1500, 300, 248}};
        EndToEndTest.runStep(clients, reference, root, docs, true, 1);
        EndToEndTest.runStep(clients, reference, root, docs, false, 2);
        for (DistcaClient c : clients) {
          assertEquals(0, c.retries(), "every request fit the limit the servers advertised: " + c.diagnostics());
        }
      } finally {
        closeAll(clients);
      }
    }
  }

  @Test
  void requestsAboveTheClientsOwnFrameLimitAreCutToFit() throws Exception {
    try (BufferAllocator root = new RootAllocator();
        Cluster cluster = new Cluster(root, sc -> { });
        ReferenceAttention reference = new ReferenceAttention()) {
      List<DistcaClient> clients = cluster.clients(root, 1, cc -> cc.maxFrameBytes = MIB);
      try {
        EndToEndTest.runStep(clients, reference, root, new int[][] {{2048, 100}}, true, 1);
        assertEquals(0, clients.get(0).retries());
      } finally {
        closeAll(clients);
      }
    }
  }

  @Test
  void aTaskWhoseKeysAloneExceedTheLimitFailsAtOnceWithATypedError() throws Exception {
    try (BufferAllocator root = new RootAllocator();
        Cluster cluster = new Cluster(root, sc -> { })) {
      List<DistcaClient> clients = cluster.clients(root, 1, cc -> cc.maxFrameBytes = MIB);
      try (OwnedTensors owned = new OwnedTensors(root)) {
        // full attention over 8192 keys: K and V of the document are 2 MiB, so no query range fits in 1 MiB
        int t = 8192;
        SplittableRandom rnd = new SplittableRandom(5);
        var shape = SHAPE;
        Tensor q = owned.adopt(CheckedStep.random(root, rnd, shape.dtype(), t, shape.headsQ(), shape.headDim()));
        Tensor k = owned.adopt(CheckedStep.random(root, rnd, shape.dtype(), t, shape.headsKv(), shape.headDim()));
        Tensor v = owned.adopt(CheckedStep.random(root, rnd, shape.dtype(), t, shape.headsKv(), shape.headDim()));
        DistcaClient client = clients.get(0);
        ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
            () -> client.forward(1, new MicroBatch(shape, false, new int[] {t}, q, k, v)).get(60, TimeUnit.SECONDS));
        DistcaException de = assertInstanceOf(DistcaException.class, e.getCause());
        ProtocolException why = assertInstanceOf(ProtocolException.class, de.getCause());
        assertEquals(ErrorCode.LIMIT_EXCEEDED, why.code());
        assertTrue(de.getMessage().contains("frame limit"), de.getMessage());
        assertEquals(0, client.retries(), "nothing was sent, nothing retried");
        assertEquals(0, client.requestCounts().requestsStarted());
      } finally {
        closeAll(clients);
      }
    }
  }

  @Test
  void aServerAdvertisesNoLargerRequestsThanItsAdmissionBudgetTakesAndTheClientFitsThem() throws Exception {
    try (BufferAllocator root = new RootAllocator();
        Cluster cluster = new Cluster(root, sc -> {
          sc.maxMemoryBytes = 16 * MIB;
          sc.maxInflightBytes = 2 * MIB; // a request is charged twice its tensors: requests of at most 1 MiB
        });
        ReferenceAttention reference = new ReferenceAttention()) {
      AttentionServer server = cluster.cluster.servers().get(0);
      assertEquals(MIB, server.maxRequestFrameBytes());
      EventLoopGroup group = Transports.group(1, "frame-limit-test");
      try (PeerConnection c = PeerConnection.connect(group, "127.0.0.1", server.port(),
          new Hello(1, "trainer", "probe", ""), WireSetup.client(root), Duration.ofSeconds(10)).get(10, TimeUnit.SECONDS)) {
        assertEquals(MIB, c.helloOk().maxFrameBytes(), "HELLO_OK tells the request limit");
      } finally {
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
      }
      // a budget of one request at a time: the client backs off on OVERLOADED until its turn
      List<DistcaClient> clients = cluster.clients(root, 1, cc -> cc.maxAttempts = 1000);
      try {
        EndToEndTest.runStep(clients, reference, root, new int[][] {{2048}}, true, 1);
      } finally {
        closeAll(clients);
      }
    }
  }
}
