package io.distca.protocol.transport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.HeartbeatOk;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.testkit.FrameSpec;
import io.distca.protocol.testkit.RawPeer;
import io.distca.protocol.testkit.SeedFrames;
import io.distca.protocol.testkit.TestPki;
import io.distca.protocol.tls.TlsOptions;
import io.distca.protocol.wire.NettyLeaks;
import io.distca.protocol.wire.WireSetup;
import io.netty.channel.EventLoopGroup;
import io.netty.handler.ssl.SslHandler;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLException;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.NullSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Who gets in, over real loopback connections: TLS with certificates from a throw-away CA issued at
 * run time, the HELLO token, mutual TLS, the per-peer connection limit, and what an unauthenticated
 * peer gets (one typed refusal, then the connection closes). After every refusal the server still
 * serves a good client.
 */
class MessageServerSecurityTest {
  private static final String TOKEN = "s3cret";

  @TempDir
  static Path dir;

  private static TestPki pki;
  private static TestPki otherPki;
  private static EventLoopGroup group;

  private BufferAllocator allocator;
  private final List<AutoCloseable> closeAfter = new ArrayList<>();

  static {
    NettyLeaks.install();
  }

  @BeforeAll
  static void issueCertificates() {
    pki = TestPki.create(dir, "cluster");
    otherPki = TestPki.create(dir, "other");
    group = Transports.group(2, "security-test-client");
  }

  @AfterAll
  static void stopClients() {
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }

  @BeforeEach
  void openAllocator() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void closeEverything() throws Exception {
    for (int i = closeAfter.size() - 1; i >= 0; i--) {
      closeAfter.get(i).close();
    }
    allocator.close();
    NettyLeaks.assertNoLeaks();
  }

  // ---- set-up helpers

  private MessageServer server(TlsOptions tls, ConnectionLimits limits) {
    MessageServer s = new MessageServer("test-server", "127.0.0.1", 0, 1, TOKEN, 1 << 20, limits,
        WireSetup.server(allocator, 1 << 20, tls), new HeartbeatHandler());
    closeAfter.add(s);
    return s;
  }

  private MessageServer server(TlsOptions tls) {
    return server(tls, ConnectionLimits.DEFAULT);
  }

  private CompletableFuture<PeerConnection> connect(MessageServer server, TlsOptions tls, String token) {
    CompletableFuture<PeerConnection> f = PeerConnection.connect(group, "127.0.0.1", server.port(),
        new Hello(1, "trainer", "test-client", token), WireSetup.client(allocator, tls), Duration.ofSeconds(5));
    f.thenAccept(closeAfter::add);
    return f;
  }

  private PeerConnection connected(MessageServer server, TlsOptions tls) throws Exception {
    return connect(server, tls, TOKEN).get(10, TimeUnit.SECONDS);
  }

  /** The connection attempt fails; returns the reason. */
  private static Throwable refused(CompletableFuture<PeerConnection> attempt) {
    ExecutionException e = assertThrows(ExecutionException.class, () -> attempt.get(10, TimeUnit.SECONDS));
    return e.getCause();
  }

  private static ProtocolException refusedWith(CompletableFuture<PeerConnection> attempt, ErrorCode code) {
    ProtocolException pe = assertInstanceOf(ProtocolException.class, refused(attempt));
    assertEquals(code, pe.code(), pe.getMessage());
    return pe;
  }

  private static void assertTlsFailure(Throwable refusal) {
    for (Throwable t = refusal; t != null; t = t.getCause()) {
      if (t instanceof SSLException) {
        return;
      }
    }
    throw new AssertionError("expected a TLS failure, got " + refusal, refusal);
  }

  /** A client with the right token and certificates is served: PING and a request through the handler. */
  private void assertServesAGoodClient(MessageServer server, TlsOptions clientTls) throws Exception {
    PeerConnection c = connected(server, clientTls);
    try (Message pong = c.request(Message.of(MessageType.PING, 0, new Ping(77))).get(10, TimeUnit.SECONDS)) {
      assertEquals(77, pong.meta(Ping.class).sentNanos());
    }
    try (Message ok = c.request(Message.of(MessageType.HEARTBEAT, 0, new Heartbeat("s", 0, 0, false)))
        .get(10, TimeUnit.SECONDS)) {
      assertTrue(ok.meta(HeartbeatOk.class).known());
    }
    c.close();
  }

  private TlsOptions serverTls() {
    return pki.options(pki.loopback("server"));
  }

  // ---- TLS and token

  @Test
  void aTlsClientWithTheTokenIsServedOverTls13() throws Exception {
    MessageServer server = server(serverTls());
    PeerConnection c = connected(server, pki.trustingClient());
    SslHandler ssl = c.channel().pipeline().get(SslHandler.class);
    assertNotNull(ssl, "no TLS on the client channel");
    assertEquals("TLSv1.3", ssl.engine().getSession().getProtocol());
    assertServesAGoodClient(server, pki.trustingClient());
    assertEquals(0, server.refusals());
  }

  @ParameterizedTest(name = "token {0}")
  @NullSource
  @ValueSource(strings = {"", "wrong", TOKEN + "x", "s3cre"})
  void aClientWithoutTheRightTokenIsRefusedAndTheServerServesOthers(String token) throws Exception {
    MessageServer server = server(serverTls());
    ProtocolException pe = refusedWith(connect(server, pki.trustingClient(), token), ErrorCode.UNAUTHENTICATED);
    assertEquals("token", pe.field());
    assertEquals(1, server.refusals());
    assertServesAGoodClient(server, pki.trustingClient());
  }

  @Test
  void aPlaintextClientAgainstATlsServerGetsAPlaintextRefusal() throws Exception {
    MessageServer server = server(serverTls());
    ProtocolException pe = refusedWith(connect(server, null, TOKEN), ErrorCode.UNAUTHENTICATED);
    assertTrue(pe.detail().contains("requires TLS"), pe.detail());
    assertServesAGoodClient(server, pki.trustingClient());
  }

  @Test
  void aTlsClientAgainstAPlaintextServerFailsItsHandshake() throws Exception {
    MessageServer server = server(null);
    assertTlsFailure(refused(connect(server, pki.trustingClient(), TOKEN)));
    assertServesAGoodClient(server, null);
  }

  @Test
  void aServerCertificateFromAnUntrustedCaIsRefusedByTheClient() throws Exception {
    MessageServer server = server(otherPki.options(otherPki.loopback("impostor")));
    assertTlsFailure(refused(connect(server, pki.trustingClient(), TOKEN)));
    assertServesAGoodClient(server, otherPki.trustingClient());
  }

  @Test
  void aServerCertificateForAnotherHostIsRefusedUnlessHostnameVerificationIsOff() throws Exception {
    Instant now = Instant.now();
    TestPki.Identity elsewhere = pki.issue("db", now.minusSeconds(3600), now.plusSeconds(86_400), "db.example.com");
    MessageServer server = server(pki.options(elsewhere));
    Throwable refusal = refused(connect(server, pki.trustingClient(), TOKEN));
    assertTlsFailure(refusal);
    assertServesAGoodClient(server, pki.trustingClient().verifyHostname(false));
  }

  @Test
  void anExpiredServerCertificateIsRefused() throws Exception {
    Instant now = Instant.now();
    TestPki.Identity expired = pki.issue("expired", now.minus(Duration.ofDays(2)), now.minus(Duration.ofDays(1)),
        "localhost", "127.0.0.1");
    MessageServer server = server(pki.options(expired));
    assertTlsFailure(refused(connect(server, pki.trustingClient(), TOKEN)));
  }

  @Test
  void mutualTlsRefusesClientsWithoutACertificateOrWithAnUntrustedOne() throws Exception {
    MessageServer server = server(serverTls().requireClientCertificate(true));
    assertTlsFailure(refused(connect(server, pki.trustingClient(), TOKEN)));
    TlsOptions rogue = otherPki.options(otherPki.loopback("rogue")).trustedCertificates(pki.caCertificate());
    assertTlsFailure(refused(connect(server, rogue, TOKEN)));
    assertTrue(server.refusals() >= 2, "handshake failures are counted: " + server.refusals());
    assertServesAGoodClient(server, pki.options(pki.loopback("trainer-7")));
  }

  @Test
  void badTlsSettingsFailAtStartUpNamingTheProblem() {
    IllegalStateException missing = assertThrows(IllegalStateException.class,
        () -> new TlsOptions().certificateChain(dir.resolve("nope.crt")).privateKey(dir.resolve("nope.key")).conclude());
    assertTrue(missing.getMessage().contains("nope.crt"), missing.getMessage());
    TestPki.Identity id = pki.loopback("half");
    assertThrows(IllegalStateException.class, () -> new TlsOptions().certificateChain(id.certificateChain()).conclude());
    assertThrows(IllegalStateException.class, () -> new TlsOptions().certificateChain(id.certificateChain())
        .privateKey(id.privateKey()).requireClientCertificate(true).conclude());
    IllegalStateException notAKey = assertThrows(IllegalStateException.class,
        () -> new TlsOptions().certificateChain(id.certificateChain()).privateKey(id.certificateChain()).conclude());
    assertTrue(notAKey.getMessage().contains("PKCS#8"), notAKey.getMessage());
    assertThrows(IllegalStateException.class, () -> WireSetup.server(allocator, 1 << 20, pki.trustingClient()));
  }

  // ---- what an unauthenticated peer gets

  @Test
  void tooManyConnectionsFromOneAddressAreRefusedUntilOneCloses() throws Exception {
    MessageServer server = server(serverTls(), ConnectionLimits.DEFAULT.withMaxConnectionsPerPeer(2));
    PeerConnection first = connected(server, pki.trustingClient());
    connected(server, pki.trustingClient());
    ProtocolException pe = refusedWith(connect(server, pki.trustingClient(), TOKEN), ErrorCode.TOO_MANY_CONNECTIONS);
    assertTrue(pe.retryAfterMs() > 0);
    assertTrue(pe.detail().contains("2"), pe.detail());
    first.close();
    first.channel().closeFuture().sync();
    for (int i = 0; i < 200 && server.connections() > 1; i++) {
      Thread.sleep(10); // the server sees the close a moment later
    }
    assertServesAGoodClient(server, pki.trustingClient());
  }

  @Test
  void anUnauthenticatedPeerGetsOneRefusalAndNothingElse() {
    MessageServer server = server(null);
    byte[] ping = SeedFrames.encode(allocator, Message.of(MessageType.PING, 5, new Ping(1)));
    byte[] hello = SeedFrames.encode(allocator, SeedFrames.control(MessageType.HELLO, 6, TOKEN));
    try (RawPeer peer = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      // PING before HELLO, then a valid HELLO and another PING in the same write
      peer.send(concat(ping, hello, ping));
      RawPeer.Reply reply = peer.read();
      assertEquals(5, reply.requestId());
      assertEquals(ErrorCode.UNAUTHENTICATED, reply.error().code());
      assertTrue(peer.closesWithoutAnotherFrame());
    }
    assertEquals(1, server.refusals());
  }

  @Test
  void anUndecodableFirstFrameIsAnUnauthenticatedRefusal() {
    MessageServer server = server(null);
    byte[] hello = SeedFrames.encode(allocator, SeedFrames.control(MessageType.HELLO, 9, TOKEN));
    byte[] broken = new String(hello, StandardCharsets.ISO_8859_1).replace("\"token\"", "\"tokem\"")
        .getBytes(StandardCharsets.ISO_8859_1);
    try (RawPeer peer = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      ErrorReply e = peer.send(broken).read().error();
      assertEquals(ErrorCode.UNAUTHENTICATED, e.code());
      assertTrue(e.message().contains("valid HELLO") && e.message().contains("INVALID_METADATA"), e.message());
      assertTrue(peer.closesWithoutAnotherFrame());
    }
  }

  @Test
  void beforeHelloOnlySmallFramesAreAccepted() {
    MessageServer server = server(null);
    byte[] big = frame(99, 3, new byte[100 << 10]);
    try (RawPeer stranger = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      RawPeer.Reply reply = stranger.send(big).read();
      assertEquals(ErrorCode.FRAME_TOO_LARGE, reply.error().code());
      assertTrue(stranger.closesWithoutAnotherFrame());
    }
    byte[] hello = SeedFrames.encode(allocator, SeedFrames.control(MessageType.HELLO, 1, TOKEN));
    try (RawPeer member = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      assertEquals(MessageType.HELLO_OK, member.send(hello).read().type());
      // the same frame after HELLO is read whole: an unknown type, and the connection stays
      assertEquals(ErrorCode.UNKNOWN_MESSAGE_TYPE, member.send(big).read().error().code());
      byte[] ping = SeedFrames.encode(allocator, Message.of(MessageType.PING, 4, new Ping(9)));
      assertEquals(MessageType.PONG, member.send(ping).read().type());
    }
  }

  @Test
  void aConnectionWithoutHelloIsClosedAfterTheHelloTimeout() {
    MessageServer server = server(null, ConnectionLimits.DEFAULT.withHelloTimeoutMs(200));
    try (RawPeer silent = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      RawPeer.Reply reply = silent.read();
      assertEquals(0, reply.requestId());
      assertEquals(ErrorCode.UNAUTHENTICATED, reply.error().code());
      assertTrue(silent.closesWithoutAnotherFrame());
    }
  }

  @Test
  void dataPortsAnswerHttpWithAProtocolErrorNeverWithHttp() {
    byte[] get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
    for (TlsOptions tls : new TlsOptions[] {null, serverTls()}) {
      MessageServer server = server(tls);
      try (RawPeer browser = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
        RawPeer.Reply reply = browser.send(get).read();
        assertEquals(tls == null ? ErrorCode.MALFORMED_FRAME : ErrorCode.UNAUTHENTICATED, reply.error().code());
        assertTrue(browser.closesWithoutAnotherFrame());
      }
    }
  }

  // ---- isolation between connections

  /**
   * Two clients use the same request ids at once; each gets the answers to its own requests and
   * nothing of the other's: answers go to the connection that asked, whatever ids a peer picks.
   */
  @Test
  void answersGoOnlyToTheConnectionThatAskedEvenWithCollidingRequestIds() {
    MessageServer server = server(null);
    byte[] hello = SeedFrames.encode(allocator, SeedFrames.control(MessageType.HELLO, 1, TOKEN));
    try (RawPeer a = RawPeer.connect(server.port(), Duration.ofSeconds(10));
        RawPeer b = RawPeer.connect(server.port(), Duration.ofSeconds(10))) {
      assertEquals(MessageType.HELLO_OK, a.send(hello).read().type());
      assertEquals(MessageType.HELLO_OK, b.send(hello).read().type());
      int n = 200;
      List<byte[]> fromA = new ArrayList<>();
      List<byte[]> fromB = new ArrayList<>();
      for (int i = 1; i <= n; i++) {
        fromA.add(SeedFrames.encode(allocator, Message.of(MessageType.PING, i, new Ping(1_000_000 + i))));
        fromB.add(SeedFrames.encode(allocator, Message.of(MessageType.PING, i, new Ping(2_000_000 + i))));
      }
      a.send(concat(fromA.toArray(new byte[0][])));
      b.send(concat(fromB.toArray(new byte[0][])));
      for (int i = 1; i <= n; i++) {
        assertArrayEquals(new long[] {i, 1_000_000 + i}, pong(a.read()));
        assertArrayEquals(new long[] {i, 2_000_000 + i}, pong(b.read()));
      }
    }
  }

  private static long[] pong(RawPeer.Reply reply) {
    assertEquals(MessageType.PONG, reply.type(), String.valueOf(reply));
    long sent = Long.parseLong(reply.meta().replaceAll("[^0-9]", ""));
    return new long[] {reply.requestId(), sent};
  }

  // ---- bytes

  private static byte[] frame(int type, long requestId, byte[] meta) {
    int padding = (8 - (FrameSpec.HEADER_BYTES + meta.length) % 8) % 8;
    ByteBuffer b = ByteBuffer.allocate(FrameSpec.HEADER_BYTES + meta.length + padding);
    b.putInt(FrameSpec.MAGIC).put((byte) 1).put((byte) type).putShort((short) 0).putLong(requestId)
        .putInt(meta.length).putInt(0).putLong(0).put(meta);
    return b.array();
  }

  private static byte[] concat(byte[]... parts) {
    ByteBuffer b = ByteBuffer.allocate(java.util.Arrays.stream(parts).mapToInt(p -> p.length).sum());
    for (byte[] p : parts) {
      b.put(p);
    }
    return b.array();
  }

  /** Answers HEARTBEAT, the one request this test server serves beyond PING. */
  private static final class HeartbeatHandler implements RequestHandler {
    @Override
    public void handle(Message message, Responder responder) {
      message.close();
      if (message.type() != MessageType.HEARTBEAT) {
        throw new ProtocolException(ErrorCode.UNEXPECTED_MESSAGE, null, "only HEARTBEAT here");
      }
      responder.reply(Message.of(MessageType.HEARTBEAT_OK, message.requestId(), new HeartbeatOk(true)));
    }
  }
}
