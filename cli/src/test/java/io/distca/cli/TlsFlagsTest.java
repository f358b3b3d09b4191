package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.testkit.TestPki;
import io.distca.protocol.tls.TlsOptions;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/**
 * The TLS flags every listening or connecting command shares: what they parse into, and
 * {@code distca attn --remote} against a server that requires mutual TLS and a token, with the
 * flags (answered) and without them (refused).
 */
class TlsFlagsTest {
  @TempDir
  Path dir;

  @Command(name = "holder")
  static final class Holder {
    @Mixin
    TlsFlags tls = new TlsFlags();
  }

  private static TlsFlags parse(String... args) {
    Holder h = new Holder();
    new CommandLine(h).parseArgs(args);
    return h.tls;
  }

  @Test
  void noFlagMeansPlaintextAndFlagsMeanConcludedOptions() {
    TestPki pki = TestPki.create(dir, "cli");
    TestPki.Identity id = pki.loopback("server");
    assertNull(parse().options());
    TlsOptions o = parse("--tls-cert", id.certificateChain().toString(), "--tls-key", id.privateKey().toString(),
        "--tls-ca", pki.caCertificate().toString(), "--tls-require-client-cert", "--tls-no-verify-hostname").options();
    assertTrue(o.canServe());
    assertTrue(o.requireClientCertificate());
    assertEquals(false, o.verifyHostname());
    assertThrows(IllegalStateException.class, () -> parse("--tls-require-client-cert").options(),
        "mutual TLS without a CA is a start-up error");
  }

  @Test
  void attnReachesAMutualTlsServerWithTheFlagsAndIsRefusedWithout() throws Exception {
    TestPki pki = TestPki.create(dir, "cli");
    try (BufferAllocator root = new RootAllocator()) {
      int tokens = 8;
      SplittableRandom rnd = new SplittableRandom(1);
      for (String name : new String[] {"q", "k", "v"}) {
        try (Tensor t = Tensor.allocate(root, DType.FP32, tokens, 2, 8)) {
          for (long i = 0; i < t.numel(); i++) {
            t.setFloat(i, (float) rnd.nextDouble());
          }
          Npy.write(dir.resolve(name + ".npy"), t);
        }
      }
      try (Tensor cu = Tensor.allocate(root, DType.INT32, 2)) {
        cu.setInt(0, 0);
        cu.setInt(1, tokens);
        Npy.write(dir.resolve("cu.npy"), cu);
      }
      ServerContext ctx = new ServerContext();
      ctx.host = "127.0.0.1";
      ctx.port = 0;
      ctx.backend = "cpu";
      ctx.computeThreads = 1;
      ctx.token = "t0ken";
      ctx.tls = pki.options(pki.loopback("server")).requireClientCertificate(true);
      try (AttentionServer server = new AttentionServer(ctx, root)) {
        TestPki.Identity client = pki.loopback("cli-client");
        String[] request = {"attn", "--q", npy("q"), "--k", npy("k"), "--v", npy("v"), "--cu-seqlens-q", npy("cu"),
            "--cu-seqlens-k", npy("cu"), "--causal", "--remote", "127.0.0.1:" + server.port(), "--token", "t0ken"};
        StringWriter err = new StringWriter();
        CommandLine refused = Distca.commandLine();
        refused.setErr(new PrintWriter(err));
        assertNotEquals(0, refused.execute(concat(request, "--out-dir", dir.resolve("plain").toString())),
            "a plaintext attn got an answer from a mutual-TLS server");
        assertEquals(0, Distca.commandLine().execute(concat(request, "--out-dir", dir.resolve("tls").toString(),
            "--tls-cert", client.certificateChain().toString(), "--tls-key", client.privateKey().toString(),
            "--tls-ca", pki.caCertificate().toString())));
        assertTrue(Files.exists(dir.resolve("tls").resolve("o.npy")));
        assertEquals(1, server.tasksServed());
      }
    }
  }

  private String npy(String name) {
    return dir.resolve(name + ".npy").toString();
  }

  private static String[] concat(String[] a, String... b) {
    String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }
}
