package io.distca.cli;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.Backends;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import io.netty.channel.EventLoopGroup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code distca attn}: core attention on NumPy dumps, locally or on a remote attention server, so
 * anyone can check a server against PyTorch on the same inputs.
 */
@Command(name = "attn", mixinStandardHelpOptions = true,
    description = "Run varlen core attention on .npy inputs (locally or on --remote) and write .npy outputs.")
final class AttnCommand implements Callable<Integer> {
  @Option(names = "--q", required = true, description = "Q [tokens_q, heads_q, head_dim], float32 or float16.")
  Path qPath;

  @Option(names = "--k", required = true, description = "K [tokens_k, heads_kv, head_dim].")
  Path kPath;

  @Option(names = "--v", required = true, description = "V [tokens_k, heads_kv, head_dim].")
  Path vPath;

  @Option(names = "--cu-seqlens-q", required = true, description = "int32 [docs + 1] query offsets.")
  Path cuqPath;

  @Option(names = "--cu-seqlens-k", description = "int32 [docs + 1] key offsets (default: same as --cu-seqlens-q).")
  Path cukPath;

  @Option(names = "--causal", description = "Causal mask, bottom-right aligned when a query document is shorter than its keys.")
  boolean causal;

  @Option(names = "--scale", description = "Softmax scale (default: 1/sqrt(head_dim)).")
  Float scale;

  @Option(names = "--dtype", description = "Compute dtype bf16, fp16 or fp32 (default: the input's: fp32 or fp16).")
  String dtype;

  @Option(names = "--backward", description = "Also compute dQ, dK, dV (needs --do).")
  boolean backward;

  @Option(names = "--do", description = "dO [tokens_q, heads_q, head_dim] for --backward.")
  Path doPath;

  @Option(names = "--o", description = "O of the forward for --backward (default: recomputed).")
  Path oPath;

  @Option(names = "--lse", description = "LSE [heads_q, tokens_q] float32 for --backward (default: recomputed).")
  Path lsePath;

  @Option(names = "--remote", description = "host:port of an attention server; default runs locally.")
  String remote;

  @Option(names = "--backend", description = "Local backend: cpu or reference (default: ${DEFAULT-VALUE}).")
  String backend = "cpu";

  @Option(names = "--token", description = "Token for --remote (default: $DISTCA_TOKEN or none).")
  String token = System.getenv().getOrDefault("DISTCA_TOKEN", "");

  @Mixin
  TlsFlags tls = new TlsFlags();

  @Option(names = "--out-dir", required = true, description = "Where o.npy, lse.npy (and dq.npy, dk.npy, dv.npy) go.")
  Path outDir;

  @Override
  public Integer call() throws Exception {
    if (backward && doPath == null) {
      throw new IllegalArgumentException("--backward needs --do");
    }
    if ((oPath == null) != (lsePath == null)) {
      throw new IllegalArgumentException("--o and --lse go together");
    }
    Files.createDirectories(outDir);
    try (BufferAllocator root = new RootAllocator(); Inputs in = Inputs.load(this, root)) {
      Tensor[] forward;
      if (backward && oPath != null) {
        forward = new Tensor[] {in.cast(Npy.read(oPath, root), root), Npy.read(lsePath, root)};
      } else {
        forward = run(in, null, root);
      }
      try {
        writeNpy(outDir.resolve("o.npy"), forward[0], root);
        Npy.write(outDir.resolve("lse.npy"), forward[1]);
        System.out.printf("wrote %s and %s%n", outDir.resolve("o.npy"), outDir.resolve("lse.npy"));
        if (backward) {
          try (Tensor dO = in.cast(Npy.read(doPath, root), root)) {
            Tensor[] grads = run(in, new Tensor[] {forward[0], forward[1], dO}, root);
            try {
              String[] names = {"dq.npy", "dk.npy", "dv.npy"};
              for (int i = 0; i < 3; i++) {
                writeNpy(outDir.resolve(names[i]), grads[i], root);
              }
              System.out.printf("wrote dq.npy, dk.npy, dv.npy into %s%n", outDir);
            } finally {
              closeAll(grads);
            }
          }
        }
      } finally {
        closeAll(forward);
      }
    }
    return 0;
  }

  /** .npy has no bfloat16: bf16 results are written as float32. */
  private static void writeNpy(Path path, Tensor t, BufferAllocator root) throws java.io.IOException {
    if (t.dtype() != DType.BF16) {
      Npy.write(path, t);
      return;
    }
    try (Tensor f = Tensor.allocate(root, DType.FP32, t.shape())) {
      f.copyFrom(t);
      Npy.write(path, f);
    }
  }

  private static void closeAll(Tensor[] ts) {
    for (Tensor t : ts) {
      if (t != null) {
        t.close();
      }
    }
  }

  /** Forward ({@code bwd == null}: returns o, lse) or backward (bwd = o, lse, dO: returns dq, dk, dv). */
  private Tensor[] run(Inputs in, Tensor[] bwd, BufferAllocator root) throws Exception {
    return remote == null ? runLocal(in, bwd, root) : runRemote(in, bwd, root);
  }

  private Tensor[] runLocal(Inputs in, Tensor[] bwd, BufferAllocator root) {
    AttentionShape s = in.shape;
    int tq = in.q.dim(0);
    int tk = in.k.dim(0);
    Tensor[] out = bwd == null
        ? new Tensor[] {Tensor.allocate(root, s.dtype(), tq, s.headsQ(), s.headDim()), Tensor.allocate(root, DType.FP32, s.headsQ(), tq)}
        : new Tensor[] {Tensor.allocate(root, s.dtype(), tq, s.headsQ(), s.headDim()),
            Tensor.allocate(root, s.dtype(), tk, s.headsKv(), s.headDim()),
            Tensor.allocate(root, s.dtype(), tk, s.headsKv(), s.headDim())};
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    // the backward's delta = rowsum(dO * O), as a trainer client computes it before sending
    Tensor delta = bwd == null ? null : AttentionDelta.of(root, bwd[0], bwd[2]);
    for (int d = 0; d < in.docs(); d++) {
      int q0 = in.cuq[d];
      int q1 = in.cuq[d + 1];
      int k0 = in.cuk[d];
      int k1 = in.cuk[d + 1];
      int diag = (k1 - k0) - (q1 - q0);
      if (bwd == null) {
        segments.add(KvSegment.forward(in.k.sliceRows(k0, k1), in.v.sliceRows(k0, k1)));
        slices.add(QuerySlice.forward(d, 0, k1 - k0, causal, diag, in.q.sliceRows(q0, q1), out[0].sliceRows(q0, q1),
            new LseView(out[1], q0)));
      } else {
        segments.add(new KvSegment(in.k.sliceRows(k0, k1), in.v.sliceRows(k0, k1), out[1].sliceRows(k0, k1),
            out[2].sliceRows(k0, k1)));
        slices.add(QuerySlice.backward(d, 0, k1 - k0, causal, diag, in.q.sliceRows(q0, q1), new LseView(bwd[1], q0),
            new LseView(delta, q0), bwd[2].sliceRows(q0, q1), out[0].sliceRows(q0, q1)));
      }
    }
    try (AttentionBackend b = Backends.create(backend, 0)) {
      AttentionBatch batch = new AttentionBatch(s, segments, slices);
      if (bwd == null) {
        b.forward(batch);
      } else {
        b.backward(batch);
      }
    } finally {
      if (delta != null) {
        delta.close();
      }
    }
    return out;
  }

  private Tensor[] runRemote(Inputs in, Tensor[] bwd, BufferAllocator root) throws Exception {
    HostPort hp = HostPort.parse(remote, 7400);
    AttentionShape s = in.shape;
    List<TaskSpec> tasks = new ArrayList<>();
    int[] segLens = new int[in.docs()];
    for (int d = 0; d < in.docs(); d++) {
      int ql = in.cuq[d + 1] - in.cuq[d];
      int kl = in.cuk[d + 1] - in.cuk[d];
      segLens[d] = kl;
      tasks.add(new TaskSpec(d, 0, ql, d, 0, kl, causal, kl - ql));
    }
    AttentionRequest meta = new AttentionRequest("distca-attn", 0, 0, s.headsQ(), s.headsKv(), s.headDim(),
        s.dtype().wireName(), s.scale(), tasks, segLens);
    TensorSet set = new TensorSet();
    if (bwd != null) {
      set.putNew("delta", root, DType.FP32, s.headsQ(), in.q.dim(0));
      AttentionDelta.computeInto(bwd[0], bwd[2], set.get("delta"), 0);
    }
    set.put("q", in.q.borrow());
    set.put("k", in.k.borrow());
    set.put("v", in.v.borrow());
    if (bwd != null) {
      set.put("do", bwd[2].borrow());
      set.put("lse", bwd[1].borrow());
    }
    EventLoopGroup group = Transports.group(1, "distca-attn");
    try (PeerConnection c = PeerConnection.connect(group, hp.host(), hp.port(), new Hello(1, "trainer", "distca-attn", token),
        WireSetup.client(root, tls.options()), Duration.ofSeconds(10)).get(20, TimeUnit.SECONDS)) {
      MessageType type = bwd == null ? MessageType.FORWARD_REQUEST : MessageType.BACKWARD_REQUEST;
      try (Message reply = c.request(Message.of(type, 0, meta, set)).get(10, TimeUnit.MINUTES)) {
        String[] names = bwd == null ? new String[] {"o", "lse"} : new String[] {"dq", "dk", "dv"};
        Tensor[] out = new Tensor[names.length];
        for (int i = 0; i < names.length; i++) {
          Tensor r = reply.tensors().get(names[i]);
          out[i] = Tensor.allocate(root, r.dtype(), r.shape());
          out[i].copyFrom(r);
        }
        return out;
      }
    } finally {
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }
  }

  /** Loaded and checked inputs in the compute dtype. */
  private static final class Inputs implements AutoCloseable {
    final Tensor q;
    final Tensor k;
    final Tensor v;
    final int[] cuq;
    final int[] cuk;
    final AttentionShape shape;

    private Inputs(Tensor q, Tensor k, Tensor v, int[] cuq, int[] cuk, AttentionShape shape) {
      this.q = q;
      this.k = k;
      this.v = v;
      this.cuq = cuq;
      this.cuk = cuk;
      this.shape = shape;
    }

    int docs() {
      return cuq.length - 1;
    }

    static Inputs load(AttnCommand cmd, BufferAllocator root) throws Exception {
      Tensor q = Npy.read(cmd.qPath, root);
      Tensor k = Npy.read(cmd.kPath, root);
      Tensor v = Npy.read(cmd.vPath, root);
      int[] cuq = readOffsets(cmd.cuqPath, root);
      int[] cuk = cmd.cukPath == null ? cuq : readOffsets(cmd.cukPath, root);
      try {
        require(q.rank() == 3 && k.rank() == 3 && v.rank() == 3, "q, k and v must be [tokens, heads, head_dim]");
        require(q.dtype().isFloating() && q.dtype() == k.dtype() && k.dtype() == v.dtype(),
            "q, k and v must share one float dtype, got " + q.dtype() + ", " + k.dtype() + ", " + v.dtype());
        require(java.util.Arrays.equals(k.shape(), v.shape()), "k and v shapes differ");
        require(q.dim(2) == k.dim(2), "q and k head_dim differ");
        require(cuq.length == cuk.length, "cu_seqlens_q and cu_seqlens_k have different document counts");
        checkOffsets(cuq, q.dim(0), "cu_seqlens_q");
        checkOffsets(cuk, k.dim(0), "cu_seqlens_k");
        DType compute = cmd.dtype == null ? q.dtype() : DType.fromWireName(cmd.dtype);
        require(compute != null && compute.isFloating(), "--dtype must be bf16, fp16 or fp32");
        float scale = cmd.scale != null ? cmd.scale : AttentionShape.defaultScale(q.dim(2));
        AttentionShape shape = new AttentionShape(q.dim(1), k.dim(1), q.dim(2), compute, scale);
        String problem = shape.problem();
        require(problem == null, problem);
        return new Inputs(castOwned(q, compute, root), castOwned(k, compute, root), castOwned(v, compute, root), cuq,
            cuk, shape);
      } catch (RuntimeException e) {
        q.close();
        k.close();
        v.close();
        throw e;
      }
    }

    Tensor cast(Tensor t, BufferAllocator root) {
      return castOwned(t, shape.dtype(), root);
    }

    private static Tensor castOwned(Tensor t, DType to, BufferAllocator root) {
      if (t.dtype() == to) {
        return t;
      }
      Tensor c = Tensor.allocate(root, to, t.shape());
      c.copyFrom(t);
      t.close();
      return c;
    }

    private static int[] readOffsets(Path p, BufferAllocator root) throws Exception {
      try (Tensor t = Npy.read(p, root)) {
        require(t.dtype() == DType.INT32 && t.rank() == 1, p + " must be a 1-D int32 array");
        int[] a = new int[(int) t.numel()];
        for (int i = 0; i < a.length; i++) {
          a[i] = t.getInt(i);
        }
        return a;
      }
    }

    private static void checkOffsets(int[] cu, int tokens, String name) {
      require(cu.length >= 1 && cu[0] == 0, name + " must start at 0");
      for (int i = 1; i < cu.length; i++) {
        require(cu[i] >= cu[i - 1], name + " must be non-decreasing (index " + i + ")");
      }
      require(cu[cu.length - 1] == tokens, name + " ends at " + cu[cu.length - 1] + " but the tensor has " + tokens + " tokens");
    }

    private static void require(boolean ok, String message) {
      if (!ok) {
        throw new IllegalArgumentException(message);
      }
    }

    @Override
    public void close() {
      q.close();
      k.close();
      v.close();
    }
  }
}
