package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.client.MicroBatch;
import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.testkit.RawPeer;
import io.distca.protocol.testkit.SeedFrames;
import io.distca.protocol.testkit.TestPki;
import io.distca.protocol.tls.TlsOptions;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import io.distca.server.backend.ReferenceAttention;
import io.netty.channel.EventLoopGroup;
import io.netty.handler.ssl.SslHandler;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole data path with security on: a dispatcher and attention servers that speak only mutual
 * TLS (certificates from a throw-away CA issued at run time) and want a token, trainer clients that
 * present both; results match the local reference. And isolation between jobs: two jobs sharing the
 * same server at the same time each get exactly their own results, and a connection never receives
 * answers to another connection's requests, whatever request ids the two use.
 */
class SecureClusterTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));
  private static final String TOKEN = "cluster-token";

  @TempDir
  static Path dir;

  private static TestPki pki;

  @BeforeAll
  static void issueCertificates() {
    pki = TestPki.create(dir, "secure-cluster");
  }

  private static EmbeddedCluster tlsCluster(BufferAllocator root, int servers) {
    EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(servers);
    co.token = TOKEN;
    co.tls = pki.options(pki.loopback("cluster")).requireClientCertificate(true);
    return new EmbeddedCluster(co, root);
  }

  private static DistcaClient client(BufferAllocator root, EmbeddedCluster cluster, String job, int rank, int ranks,
      TlsOptions tls) {
    ClientContext cc = EndToEndTest.clientContext(cluster, job, rank, ranks);
    cc.token = TOKEN;
    cc.tls = tls;
    return new DistcaClient(cc, root);
  }

  @Test
  void forwardAndBackwardThroughAMutualTlsClusterMatchTheReference() throws Exception {
    try (BufferAllocator root = new RootAllocator(); EmbeddedCluster cluster = tlsCluster(root, 2);
        ReferenceAttention reference = new ReferenceAttention()) {
      cluster.awaitReady(20_000); // the servers registered over mutual TLS
      List<DistcaClient> clients = new ArrayList<>();
      try {
        for (int r = 0; r < 2; r++) {
          clients.add(client(root, cluster, "secure", r, 2, pki.options(pki.loopback("trainer-" + r))));
        }
        EndToEndTest.runStep(clients, reference, root, new int[][] {{700, 1, 129}, {513, 300, 3}}, true, 1);
        for (AttentionServer s : cluster.servers()) {
          assertTrue(s.tasksServed() > 0, s.serverId() + " served nothing");
        }
        assertServerSpeaksTlsAs("CN=cluster", cluster.servers().get(0).port(), root);
      } finally {
        clients.forEach(DistcaClient::close);
      }
    }
  }

  private static void assertServerSpeaksTlsAs(String subject, int port, BufferAllocator root) throws Exception {
    EventLoopGroup group = Transports.group(1, "tls-check");
    try {
      PeerConnection c = PeerConnection.connect(group, "127.0.0.1", port, new Hello(1, "trainer", "t", TOKEN),
          WireSetup.client(root, pki.options(pki.loopback("probe"))), Duration.ofSeconds(5)).get(10, TimeUnit.SECONDS);
      SslHandler ssl = assertInstanceOf(SslHandler.class, c.channel().pipeline().get(TlsOptions.HANDLER_NAME));
      assertEquals(subject, ssl.engine().getSession().getPeerPrincipal().getName());
      c.close();
    } finally {
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
    }
  }

  @Test
  void aTrainerWithoutAClientCertificateGetsNoPlanAndNoAttention() throws Exception {
    try (BufferAllocator root = new RootAllocator(); EmbeddedCluster cluster = tlsCluster(root, 1)) {
      cluster.awaitReady(20_000);
      ClientContext cc = new ClientContext();
      cc.dispatcherPort = cluster.dispatcherPort();
      cc.token = TOKEN;
      cc.tls = pki.trustingClient();
      cc.stepTimeout = Duration.ofSeconds(3);
      cc.maxAttempts = 1;
      try (DistcaClient c = new DistcaClient(cc, root)) {
        SplittableRandom rnd = new SplittableRandom(3);
        try (Tensor q = CheckedStep.random(root, rnd, SHAPE.dtype(), 64, SHAPE.headsQ(), SHAPE.headDim());
            Tensor k = CheckedStep.random(root, rnd, SHAPE.dtype(), 64, SHAPE.headsKv(), SHAPE.headDim());
            Tensor v = CheckedStep.random(root, rnd, SHAPE.dtype(), 64, SHAPE.headsKv(), SHAPE.headDim())) {
          CompletableFuture<?> f = c.forward(1, new MicroBatch(SHAPE, true, new int[] {64}, q, k, v));
          assertThrows(ExecutionException.class, () -> f.get(30, TimeUnit.SECONDS));
        }
      }
      assertEquals(0, cluster.servers().get(0).tasksServed());
    }
  }

  /**
   * Two jobs on one server at once, each over its own mutual-TLS connection, several steps each,
   * with different documents and data: every result of each job matches that job's own reference.
   */
  @Test
  void twoJobsSharingAServerEachGetOnlyTheirOwnResults() throws Exception {
    try (BufferAllocator root = new RootAllocator(); EmbeddedCluster cluster = tlsCluster(root, 1);
        ReferenceAttention reference = new ReferenceAttention()) {
      cluster.awaitReady(20_000);
      ExecutorService jobs = Executors.newFixedThreadPool(2);
      try (DistcaClient alpha = client(root, cluster, "alpha", 0, 1, pki.options(pki.loopback("alpha")));
          DistcaClient beta = client(root, cluster, "beta", 0, 1, pki.options(pki.loopback("beta")))) {
        Future<?> a = jobs.submit(() -> {
          for (int step = 1; step <= 4; step++) {
            EndToEndTest.runStep(List.of(alpha), reference, root, new int[][] {{300, 45, 7}}, step % 2 == 0, step);
          }
        });
        Future<?> b = jobs.submit(() -> {
          for (int step = 101; step <= 104; step++) {
            EndToEndTest.runStep(List.of(beta), reference, root, new int[][] {{129, 257}}, step % 2 == 1, step);
          }
        });
        a.get(120, TimeUnit.SECONDS);
        b.get(120, TimeUnit.SECONDS);
      } finally {
        jobs.shutdownNow();
      }
    }
  }

  /**
   * Request ids are per connection: two trainers number their requests 1, 2, 3... at the same time
   * on the same server, and a third peer sends PINGs with those same ids, hoping for the others'
   * answers. Each trainer gets its own job's results, correct; the third peer gets its PONGs and
   * nothing else.
   */
  @Test
  void aConnectionNeverReceivesAnswersToAnotherConnectionsRequests() throws Exception {
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention reference = new ReferenceAttention()) {
      ServerContext sc = new ServerContext();
      sc.host = "127.0.0.1";
      sc.port = 0;
      sc.backend = "cpu";
      sc.computeThreads = 1;
      sc.token = TOKEN;
      EventLoopGroup group = Transports.group(1, "isolation-test");
      try (AttentionServer server = new AttentionServer(sc, root);
          RawPeer listener = RawPeer.connect(server.port(), Duration.ofSeconds(30))) {
        byte[] hello = SeedFrames.encode(root, SeedFrames.control(MessageType.HELLO, 1, TOKEN));
        assertEquals(MessageType.HELLO_OK, listener.send(hello).read().type());
        PeerConnection alpha = connect(group, server.port(), root);
        PeerConnection beta = connect(group, server.port(), root);
        int requests = 24;
        List<CompletableFuture<Message>> alphaAnswers = new ArrayList<>();
        List<CompletableFuture<Message>> betaAnswers = new ArrayList<>();
        for (int i = 0; i < requests; i++) {
          alphaAnswers.add(alpha.request(forward(root, "alpha", i)));
          betaAnswers.add(beta.request(forward(root, "beta", i)));
          // the listener guesses the ids the two trainers are using right now
          listener.send(SeedFrames.encode(root, Message.of(MessageType.PING, i + 2, new Ping(7_000 + i))));
        }
        checkAnswers("alpha", alphaAnswers, reference, root);
        checkAnswers("beta", betaAnswers, reference, root);
        for (int i = 0; i < requests; i++) {
          RawPeer.Reply reply = listener.read();
          assertEquals(MessageType.PONG, reply.type(), "the listener got " + reply);
          assertEquals(i + 2, reply.requestId());
          assertTrue(reply.meta().contains(String.valueOf(7_000 + i)), reply.meta());
        }
        // nothing else is queued for the listener: the next frame is the answer to its next PING
        listener.send(SeedFrames.encode(root, Message.of(MessageType.PING, 999, new Ping(1))));
        assertEquals(999, listener.read().requestId());
        alpha.close();
        beta.close();
      } finally {
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
      }
    }
  }

  private static PeerConnection connect(EventLoopGroup group, int port, BufferAllocator root) throws Exception {
    return PeerConnection.connect(group, "127.0.0.1", port, new Hello(1, "trainer", "t", TOKEN), WireSetup.client(root),
        Duration.ofSeconds(5)).get(10, TimeUnit.SECONDS);
  }

  /** The tokens of request {@code i} of {@code job}: one causal document, data seeded by both. */
  private static int tokens(int i) {
    return 16 + 8 * (i % 5);
  }

  private static SplittableRandom seed(String job, int i) {
    return new SplittableRandom(job.hashCode() * 1000L + i);
  }

  private static Message forward(BufferAllocator root, String job, int i) {
    int t = tokens(i);
    SplittableRandom rnd = seed(job, i);
    TensorSet set = new TensorSet();
    set.put("q", CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsQ(), SHAPE.headDim()));
    set.put("k", CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsKv(), SHAPE.headDim()));
    set.put("v", CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsKv(), SHAPE.headDim()));
    AttentionRequest meta = new AttentionRequest(job, i, System.currentTimeMillis() + 60_000, SHAPE.headsQ(),
        SHAPE.headsKv(), SHAPE.headDim(), "bf16", SHAPE.scale(), List.of(new TaskSpec(i, 0, t, 0, 0, t, true, 0)),
        new int[] {t});
    return Message.of(MessageType.FORWARD_REQUEST, 0, meta, set);
  }

  private static void checkAnswers(String job, List<CompletableFuture<Message>> answers, ReferenceAttention reference,
      BufferAllocator root) throws Exception {
    for (int i = 0; i < answers.size(); i++) {
      try (Message m = answers.get(i).get(60, TimeUnit.SECONDS)) {
        assertEquals(MessageType.FORWARD_RESPONSE, m.type());
        assertEquals(job, m.meta(AttentionResponse.class).job(), "an answer of another job");
        int t = tokens(i);
        SplittableRandom rnd = seed(job, i);
        try (Tensor q = CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsQ(), SHAPE.headDim());
            Tensor k = CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsKv(), SHAPE.headDim());
            Tensor v = CheckedStep.random(root, rnd, SHAPE.dtype(), t, SHAPE.headsKv(), SHAPE.headDim())) {
          Tensor[] ref = LocalReference.forward(reference, new MicroBatch(SHAPE, true, new int[] {t}, q, k, v), root);
          try {
            Tensor o = m.tensors().get("o");
            assertNotNull(o);
            assertEquals(t, o.dim(0), job + " request " + i + ": rows of another request");
            assertTrue(TensorCompare.relativeMaxError(o, ref[0]) < 1e-2, job + " request " + i + ": O differs");
          } finally {
            ref[0].close();
            ref[1].close();
          }
        }
      }
    }
  }
}
