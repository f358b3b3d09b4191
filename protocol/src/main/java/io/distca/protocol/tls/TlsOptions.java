package io.distca.protocol.tls;

import io.netty.buffer.ByteBufAllocator;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslProvider;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import javax.net.ssl.SSLException;

/**
 * TLS settings of one DistCA process, shared by its listening port and its outgoing connections, and
 * the one place where TLS handlers are made: {@link #addServerHandler} and {@link #addClientHandler}
 * are what every server and client pipeline calls (through {@code WireSetup}).
 *
 * <p>Certificates and keys are PEM files, the layout a Kubernetes TLS Secret mounts: {@code tls.crt}
 * (the certificate chain, leaf first), {@code tls.key} (an unencrypted PKCS#8 private key, RSA or
 * EC) and {@code ca.crt} (the CA bundle that peers' certificates must chain to). One set serves both
 * directions: a server presents its certificate to clients, and the same certificate is the client
 * certificate when the process dials out (an attention server to its dispatcher) or when servers
 * demand mutual TLS.
 *
 * <p>Set what differs from the defaults, then {@link #conclude()} reads the files and validates
 * everything once, so a wrong path or a bad key fails at start-up with the file named, not at the
 * first connection. A {@code null} TlsOptions where one is accepted means plaintext.
 */
public final class TlsOptions {
  /** How long a TLS handshake may take before the connection is closed. */
  public static final long DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
  /** TLS 1.2 stays for clients whose runtime lacks 1.3; older versions are refused. */
  static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};
  /** Pipeline name of the TLS handler (and of the handler that stands in for it until it is known). */
  public static final String HANDLER_NAME = "distca-tls";

  private Path certificateChain;
  private Path privateKey;
  private Path trustedCertificates;
  private boolean requireClientCertificate;
  private boolean verifyHostname = true;
  private long handshakeTimeoutMs = DEFAULT_HANDSHAKE_TIMEOUT_MS;
  private SslContext serverContext;
  private SslContext clientContext;
  private boolean concluded;

  /** PEM certificate chain this process presents, leaf first ({@code tls.crt}). Needed to serve TLS. */
  public TlsOptions certificateChain(Path certificateChain) {
    checkMutable();
    this.certificateChain = certificateChain;
    return this;
  }

  public Path certificateChain() {
    return certificateChain;
  }

  /** Unencrypted PKCS#8 PEM private key of {@link #certificateChain} ({@code tls.key}). */
  public TlsOptions privateKey(Path privateKey) {
    checkMutable();
    this.privateKey = privateKey;
    return this;
  }

  public Path privateKey() {
    return privateKey;
  }

  /**
   * PEM bundle of the CAs that peers' certificates must chain to ({@code ca.crt}): the server
   * certificates this process accepts when it connects, and the client certificates it accepts when
   * {@link #requireClientCertificate}. Default none: clients then trust the JDK's CAs.
   */
  public TlsOptions trustedCertificates(Path trustedCertificates) {
    checkMutable();
    this.trustedCertificates = trustedCertificates;
    return this;
  }

  public Path trustedCertificates() {
    return trustedCertificates;
  }

  /**
   * Mutual TLS: a server refuses the handshake of a client without a certificate that chains to
   * {@link #trustedCertificates}. Default false.
   */
  public TlsOptions requireClientCertificate(boolean requireClientCertificate) {
    checkMutable();
    this.requireClientCertificate = requireClientCertificate;
    return this;
  }

  public boolean requireClientCertificate() {
    return requireClientCertificate;
  }

  /**
   * Whether a client checks that the server's certificate names the host it dialed (a DNS or IP
   * subject alternative name). Default true; turn off only for certificates without the right names.
   */
  public TlsOptions verifyHostname(boolean verifyHostname) {
    checkMutable();
    this.verifyHostname = verifyHostname;
    return this;
  }

  public boolean verifyHostname() {
    return verifyHostname;
  }

  /** Default {@link #DEFAULT_HANDSHAKE_TIMEOUT_MS}; must be positive. */
  public TlsOptions handshakeTimeoutMs(long handshakeTimeoutMs) {
    checkMutable();
    this.handshakeTimeoutMs = handshakeTimeoutMs;
    return this;
  }

  public long handshakeTimeoutMs() {
    return handshakeTimeoutMs;
  }

  /** Whether this process can accept TLS connections: it has a certificate and key. */
  public boolean canServe() {
    return certificateChain != null;
  }

  /**
   * Validates the settings, reads the PEM files and builds the TLS contexts; idempotent. After it
   * the options are frozen.
   *
   * @throws IllegalStateException naming the setting or file that is wrong
   */
  public TlsOptions conclude() {
    if (concluded) {
      return this;
    }
    if ((certificateChain == null) != (privateKey == null)) {
      throw new IllegalStateException("certificateChain and privateKey go together: got certificateChain="
          + certificateChain + ", privateKey=" + privateKey);
    }
    if (requireClientCertificate && (trustedCertificates == null || certificateChain == null)) {
      throw new IllegalStateException("requireClientCertificate needs trustedCertificates (the CA of the clients)"
          + " and this server's own certificateChain and privateKey");
    }
    if (handshakeTimeoutMs <= 0) {
      throw new IllegalStateException("handshakeTimeoutMs must be positive, got " + handshakeTimeoutMs);
    }
    requireReadable("certificateChain", certificateChain);
    requireReadable("privateKey", privateKey);
    requireReadable("trustedCertificates", trustedCertificates);
    serverContext = certificateChain == null ? null : build("server", this::serverBuilder);
    clientContext = build("client", this::clientBuilder);
    concluded = true;
    return this;
  }

  private SslContextBuilder serverBuilder() {
    SslContextBuilder b = SslContextBuilder.forServer(certificateChain.toFile(), privateKey.toFile());
    if (requireClientCertificate) {
      b.trustManager(trustedCertificates.toFile()).clientAuth(ClientAuth.REQUIRE);
    }
    return b;
  }

  private SslContextBuilder clientBuilder() {
    SslContextBuilder b = SslContextBuilder.forClient()
        .endpointIdentificationAlgorithm(verifyHostname ? "HTTPS" : null);
    if (trustedCertificates != null) {
      b.trustManager(trustedCertificates.toFile());
    }
    if (certificateChain != null) {
      b.keyManager(certificateChain.toFile(), privateKey.toFile());
    }
    return b;
  }

  private SslContext build(String side, Supplier<SslContextBuilder> builder) {
    try {
      return builder.get().sslProvider(SslProvider.JDK).protocols(PROTOCOLS).build();
    } catch (SSLException | IllegalArgumentException e) {
      // Netty reports a key it cannot parse as "File does not contain valid private key": say which
      // file, and the usual cause (a PKCS#1 "BEGIN RSA PRIVATE KEY" file, cert-manager's default).
      throw new IllegalStateException("cannot build the TLS " + side + " context from certificateChain="
          + certificateChain + ", privateKey=" + privateKey + ", trustedCertificates=" + trustedCertificates + ": "
          + rootMessage(e) + " (keys must be unencrypted PKCS#8 PEM, 'BEGIN PRIVATE KEY': convert with"
          + " 'openssl pkcs8 -topk8 -nocrypt', or set privateKey.encoding: PKCS8 in a cert-manager Certificate)", e);
    }
  }

  /**
   * Appends what makes an accepted channel speak TLS: a handler that hands a TLS peer to an
   * {@link SslHandler} and answers a plaintext peer with one ERROR UNAUTHENTICATED before closing
   * ({@link PlaintextRefusal}). Add it before the protocol codec.
   */
  public void addServerHandler(ChannelPipeline pipeline) {
    conclude();
    if (serverContext == null) {
      throw new IllegalStateException("TLS on a listening port needs certificateChain and privateKey");
    }
    pipeline.addLast(HANDLER_NAME, new PlaintextRefusal(this));
  }

  /**
   * Appends what makes a connecting channel speak TLS. The server name to verify is the host the
   * channel connects to, known only at connect time, so a stand-in handler creates the
   * {@link SslHandler} then ({@link ClientTlsInitializer}). Add it before the protocol codec.
   */
  public void addClientHandler(ChannelPipeline pipeline) {
    conclude();
    pipeline.addLast(HANDLER_NAME, new ClientTlsInitializer(this));
  }

  SslHandler newServerHandler(ByteBufAllocator alloc) {
    return withTimeout(serverContext.newHandler(alloc));
  }

  SslHandler newClientHandler(ByteBufAllocator alloc, String host, int port) {
    return withTimeout(clientContext.newHandler(alloc, host, port));
  }

  private SslHandler withTimeout(SslHandler handler) {
    handler.setHandshakeTimeout(handshakeTimeoutMs, TimeUnit.MILLISECONDS);
    return handler;
  }

  private static void requireReadable(String setting, Path file) {
    if (file != null && !Files.isReadable(file)) {
      throw new IllegalStateException(setting + " " + file + " is not a readable file");
    }
  }

  private static String rootMessage(Throwable e) {
    StringBuilder s = new StringBuilder(String.valueOf(e.getMessage()));
    for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
      s.append(": ").append(c.getMessage());
    }
    return s.toString();
  }

  private void checkMutable() {
    if (concluded) {
      throw new IllegalStateException("TlsOptions are frozen after conclude()");
    }
  }

  @Override
  public String toString() {
    return "TlsOptions(certificateChain=" + certificateChain + ", privateKey=" + privateKey + ", trustedCertificates="
        + trustedCertificates + ", requireClientCertificate=" + requireClientCertificate + ", verifyHostname="
        + verifyHostname + ")";
  }
}
