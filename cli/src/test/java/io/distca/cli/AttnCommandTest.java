package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code distca attn} on NumPy files: the outputs match attention written out longhand in this test
 * (float64, no shared code), for varlen documents whose queries are fewer than their keys (causal,
 * bottom-right aligned); and a remote server gives the same answer as the local run.
 */
class AttnCommandTest {
  static final int HQ = 4;
  static final int HKV = 2;
  static final int D = 8;
  static final int[] CUQ = {0, 5, 6, 14};
  static final int[] CUK = {0, 9, 10, 18};

  @TempDir
  Path dir;

  @Test
  void localForwardAndBackwardMatchLonghandAttention() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      writeInputs(root);
      Path out = dir.resolve("out");
      int rc = Distca.commandLine().execute("attn", "--q", p("q"), "--k", p("k"), "--v", p("v"), "--cu-seqlens-q", p("cuq"),
          "--cu-seqlens-k", p("cuk"), "--causal", "--backward", "--do", p("do"), "--out-dir", out.toString(),
          "--backend", "reference");
      assertEquals(0, rc);
      try (Tensor q = Npy.read(dir.resolve("q.npy"), root); Tensor k = Npy.read(dir.resolve("k.npy"), root);
          Tensor v = Npy.read(dir.resolve("v.npy"), root); Tensor o = Npy.read(out.resolve("o.npy"), root);
          Tensor lse = Npy.read(out.resolve("lse.npy"), root); Tensor dO = Npy.read(dir.resolve("do.npy"), root);
          Tensor dq = Npy.read(out.resolve("dq.npy"), root); Tensor dk = Npy.read(out.resolve("dk.npy"), root)) {
        double scale = 1 / Math.sqrt(D);
        double[] dkExpected = new double[(int) dk.numel()];
        for (int doc = 0; doc < 3; doc++) {
          int ql = CUQ[doc + 1] - CUQ[doc];
          int kl = CUK[doc + 1] - CUK[doc];
          for (int h = 0; h < HQ; h++) {
            int hk = h / (HQ / HKV);
            for (int i = 0; i < ql; i++) {
              int qi = CUQ[doc] + i;
              int visible = kl - ql + i + 1; // bottom-right aligned causal mask
              double[] s = new double[visible];
              double max = Double.NEGATIVE_INFINITY;
              for (int j = 0; j < visible; j++) {
                double dot = 0;
                for (int x = 0; x < D; x++) {
                  dot += q.getFloat(idx(qi, h, x, HQ)) * k.getFloat(idx(CUK[doc] + j, hk, x, HKV));
                }
                s[j] = dot * scale;
                max = Math.max(max, s[j]);
              }
              double sum = 0;
              for (double sj : s) {
                sum += Math.exp(sj - max);
              }
              double lseExpected = max + Math.log(sum);
              assertEquals(lseExpected, lse.getFloat((long) h * CUQ[3] + qi), 1e-4, "lse");
              double[] oRow = new double[D];
              double[] p = new double[visible];
              for (int j = 0; j < visible; j++) {
                p[j] = Math.exp(s[j] - lseExpected);
                for (int x = 0; x < D; x++) {
                  oRow[x] += p[j] * v.getFloat(idx(CUK[doc] + j, hk, x, HKV));
                }
              }
              double di = 0;
              for (int x = 0; x < D; x++) {
                assertEquals(oRow[x], o.getFloat(idx(qi, h, x, HQ)), 1e-4, "o");
                di += oRow[x] * dO.getFloat(idx(qi, h, x, HQ));
              }
              for (int j = 0; j < visible; j++) {
                double dp = 0;
                for (int x = 0; x < D; x++) {
                  dp += dO.getFloat(idx(qi, h, x, HQ)) * v.getFloat(idx(CUK[doc] + j, hk, x, HKV));
                }
                double ds = p[j] * (dp - di) * scale;
                for (int x = 0; x < D; x++) {
                  dkExpected[(int) idx(CUK[doc] + j, hk, x, HKV)] += ds * q.getFloat(idx(qi, h, x, HQ));
                }
              }
            }
          }
        }
        for (int i = 0; i < dkExpected.length; i++) {
          assertEquals(dkExpected[i], dk.getFloat(i), 1e-4, "dk element " + i);
        }
        assertNotEquals(0.0, dq.getFloat(0));
      }
    }
  }

  @Test
  void remoteServerGivesTheLocalAnswer() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      writeInputs(root);
      ServerContext ctx = new ServerContext();
      ctx.host = "127.0.0.1";
      ctx.port = 0;
      ctx.backend = "cpu";
      ctx.computeThreads = 1;
      try (AttentionServer server = new AttentionServer(ctx, root)) {
        Path local = dir.resolve("local");
        Path remote = dir.resolve("remote");
        String[] common = {"attn", "--q", p("q"), "--k", p("k"), "--v", p("v"), "--cu-seqlens-q", p("cuq"), "--cu-seqlens-k",
            p("cuk"), "--causal", "--backward", "--do", p("do")};
        assertEquals(0, Distca.commandLine().execute(concat(common, "--out-dir", local.toString())));
        assertEquals(0, Distca.commandLine().execute(concat(common, "--out-dir", remote.toString(), "--remote",
            "127.0.0.1:" + server.port())));
        for (String name : new String[] {"o", "lse", "dq", "dk", "dv"}) {
          try (Tensor a = Npy.read(local.resolve(name + ".npy"), root); Tensor b = Npy.read(remote.resolve(name + ".npy"), root)) {
            assertEquals(a.numel(), b.numel());
            for (long i = 0; i < a.numel(); i++) {
              assertEquals(a.getFloat(i), b.getFloat(i), 1e-6, name + "[" + i + "]");
            }
          }
        }
        assertTrue(server.tasksServed() >= 6); // 3 documents, forward and backward
      }
    }
  }

  @Test
  void inconsistentOffsetsAreRefusedWithAClearMessage() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      writeInputs(root);
      try (Tensor bad = Tensor.allocate(root, DType.INT32, 4)) {
        int[] values = {0, 5, 4, 14};
        for (int i = 0; i < 4; i++) {
          bad.setInt(i, values[i]);
        }
        Npy.write(dir.resolve("bad.npy"), bad);
      }
      java.io.StringWriter err = new java.io.StringWriter();
      var cl = Distca.commandLine();
      cl.setErr(new java.io.PrintWriter(err));
      int rc = cl.execute("attn", "--q", p("q"), "--k", p("k"), "--v", p("v"), "--cu-seqlens-q", p("bad"), "--cu-seqlens-k",
          p("cuk"), "--out-dir", dir.resolve("x").toString());
      assertNotEquals(0, rc);
      assertTrue(err.toString().contains("cu_seqlens_q must be non-decreasing"), err.toString());
    }
  }

  private static String[] concat(String[] a, String... b) {
    String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }

  private static long idx(int token, int head, int x, int heads) {
    return ((long) token * heads + head) * D + x;
  }

  private String p(String name) {
    return dir.resolve(name + ".npy").toString();
  }

  private void writeInputs(BufferAllocator root) throws Exception {
    SplittableRandom rnd = new SplittableRandom(3);
    write(root, "q", rnd, CUQ[3], HQ);
    write(root, "k", rnd, CUK[3], HKV);
    write(root, "v", rnd, CUK[3], HKV);
    write(root, "do", rnd, CUQ[3], HQ);
    offsets(root, "cuq", CUQ);
    offsets(root, "cuk", CUK);
  }

  private void write(BufferAllocator root, String name, SplittableRandom rnd, int tokens, int heads) throws Exception {
    try (Tensor t = Tensor.allocate(root, DType.FP32, tokens, heads, D)) {
      for (long i = 0; i < t.numel(); i++) {
        t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
      }
      Npy.write(dir.resolve(name + ".npy"), t);
    }
  }

  private void offsets(BufferAllocator root, String name, int[] values) throws Exception {
    try (Tensor t = Tensor.allocate(root, DType.INT32, values.length)) {
      for (int i = 0; i < values.length; i++) {
        t.setInt(i, values[i]);
      }
      Npy.write(dir.resolve(name + ".npy"), t);
    }
  }
}
