package io.distca.cli;

import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.loadtest.bench.KernelBench;
import io.distca.loadtest.bench.ServerBench;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.ServerContext;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.Backends;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cuda.BatchTimings;
import io.distca.server.backend.cuda.CudaBackendOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code distca bench kernel | server}: the backend's kernels, and a whole server against its rooflines. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks: kernel TFLOP/s; a server end to end.",
    subcommands = {BenchCommand.Kernel.class, BenchCommand.Server.class})
final class BenchCommand implements Runnable {
  @picocli.CommandLine.Spec
  picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  /** Kernel-only milliseconds where the backend reports them (CUDA events), else null (wall time is used). */
  static final Function<Object, Double> KERNEL_MILLIS = r -> r instanceof BatchTimings t ? (double) t.kernelMillis() : null;

  @Command(name = "kernel", mixinStandardHelpOptions = true,
      description = "TFLOP/s of fused varlen attention: head_dim 64/128, causal and not, s = 512..16K (b*s tokens, h*d = 2048), a pretrain varlen mix, and rebatching.")
  static final class Kernel implements Callable<Integer> {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--backend", description = "cuda, cpu or auto (default: ${DEFAULT-VALUE}).")
    String backend = "auto";

    @picocli.CommandLine.Mixin
    GpuFlags gpu = new GpuFlags();

    @Option(names = "--tokens", description = "b*s tokens per batch (default: ${DEFAULT-VALUE}).")
    int tokens = 16384;

    @Option(names = "--seqlens", split = ",", description = "Sequence lengths (default: 512,1024,2048,4096,8192,16384).")
    int[] seqLens = {512, 1024, 2048, 4096, 8192, 16384};

    @Option(names = "--head-dims", split = ",", description = "Head dims (default: 64,128).")
    int[] headDims = {64, 128};

    @Option(names = "--iters", description = "Timed iterations, median reported (default: ${DEFAULT-VALUE}).")
    int iterations = 10;

    @Option(names = "--seed", description = "Seed of the varlen mix and of the rebatching sample (default: ${DEFAULT-VALUE}).")
    long seed = 1;

    @Option(names = "--gqa", split = ",", description = "Grouped-query shapes as HQ/HKV (e.g. 32/8,8/1): the uniform"
        + " rows and the pretrain mix again with these heads, at each head dim (default: none).")
    String[] gqa = {};

    @Option(names = "--rebatch-draws", description = "Document samples over which the rebatching ratio is measured"
        + " again, seeds --seed on, each against the long sequence (default: 8 on a GPU backend, 0 on the CPU one;"
        + " 0: none).")
    Integer rebatchDraws;

    @Override
    public Integer call() {
      if (iterations < 1 || (rebatchDraws != null && rebatchDraws < 0)) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), iterations < 1
            ? "--iters must be at least 1, got " + iterations
            : "--rebatch-draws must be at least 0, got " + rebatchDraws);
      }
      List<int[]> gqaHeads = parseGqa();
      int cudaDevice = gpu.forBackend(backend);
      try (BufferAllocator root = new RootAllocator();
          AttentionBackend b = Backends.create(backend, 0, CudaBackendOptions.DEFAULT_PINNED_POOL_BYTES, cudaDevice)) {
        System.out.printf("backend %s on %s%n", b.name(), b.device());
        KernelBench bench = new KernelBench(b, root, 2, iterations, KERNEL_MILLIS);
        List<KernelBench.Row> rows = new ArrayList<>(bench.grid(tokens, headDims, seqLens));
        for (int[] h : gqaHeads) {
          for (int d : headDims) {
            rows.addAll(bench.gqaGrid(tokens, d, h[0], h[1], seqLens));
          }
        }
        int[] mix = DocLengthDistribution.pretrain().fillRank(tokens, new SplittableRandom(seed));
        for (int d : headDims) {
          rows.add(bench.varlen("pretrain mix (" + mix.length + " docs)", d, mix));
          for (int[] h : gqaHeads) {
            rows.add(bench.gqaVarlen("pretrain mix " + h[0] + "/" + h[1], d, h[0], h[1], mix));
          }
        }
        List<KernelBench.Row> rebatching = bench.rebatching(128, tokens, DocLengthDistribution.pretrain(), seed);
        rows.addAll(rebatching);
        KernelBench.print(rows, System.out);
        KernelBench.printRebatchingRatios(rebatching, System.out);
        KernelBench.printRebatchingDraws(
            bench.rebatchingDraws(128, tokens, DocLengthDistribution.pretrain(), seed, draws(b)), System.out);
      }
      return 0;
    }

    /** --gqa's shapes as {heads_q, heads_kv}, each heads_q a positive multiple of heads_kv. */
    private List<int[]> parseGqa() {
      List<int[]> out = new ArrayList<>();
      for (String g : gqa) {
        String[] parts = g.split("/");
        int hq;
        int hkv;
        try {
          hq = parts.length == 2 ? Integer.parseInt(parts[0].trim()) : -1;
          hkv = parts.length == 2 ? Integer.parseInt(parts[1].trim()) : -1;
        } catch (NumberFormatException e) {
          hq = -1;
          hkv = -1;
        }
        if (hq < 1 || hkv < 1 || hq % hkv != 0) {
          throw new picocli.CommandLine.ParameterException(spec.commandLine(),
              "--gqa takes HQ/HKV with HQ a positive multiple of HKV (e.g. 32/8), got '" + g + "'");
        }
        out.add(new int[] {hq, hkv});
      }
      return out;
    }

    private int draws(AttentionBackend b) {
      return rebatchDraws(rebatchDraws, b.name());
    }

    /** --rebatch-draws as given, or by default 8 where the kernels run on a GPU and 0 on the CPU backend (hours there). */
    static int rebatchDraws(Integer option, String backendName) {
      return option != null ? option : CpuBackend.NAME.equals(backendName) ? 0 : 8;
    }
  }

  @Command(name = "server", mixinStandardHelpOptions = true,
      description = "An attention server end to end over loopback TCP against its kernel-only and transport-only rooflines.")
  static final class Server implements Callable<Integer> {
    @Option(names = "--backend", description = "cuda, cpu or auto (default: ${DEFAULT-VALUE}).")
    String backend = "auto";

    @picocli.CommandLine.Mixin
    GpuFlags gpu = new GpuFlags();

    @Option(names = "--heads", description = "Query heads (default: ${DEFAULT-VALUE}, Llama-3-8B).")
    int heads = 32;

    @Option(names = "--kv-heads", description = "Key/value heads (default: ${DEFAULT-VALUE}).")
    int kvHeads = 8;

    @Option(names = "--head-dim", description = "Head dim (default: ${DEFAULT-VALUE}).")
    int headDim = 128;

    @Option(names = "--docs", description = "Documents per request (default: ${DEFAULT-VALUE}).")
    int docs = 4;

    @Option(names = "--doc-len", description = "Tokens per document (default: ${DEFAULT-VALUE}).")
    int docLen = 4096;

    @Option(names = "--connections", description = "Client connections (default: ${DEFAULT-VALUE}).")
    int connections = 4;

    @Option(names = "--inflight", description = "Requests in flight per connection (default: ${DEFAULT-VALUE}: ping-pong).")
    int inflight = 2;

    @Option(names = "--seconds", description = "Duration of each measurement (default: ${DEFAULT-VALUE}).")
    int seconds = 10;

    @Option(names = "--warmup-seconds", description = "Untimed run of the same pattern before each measurement, so that"
        + " buffer pools have grown to what the requests in flight hold (default: ${DEFAULT-VALUE}).")
    int warmupSeconds = 3;

    @Option(names = "--io-threads", description = "Server Netty I/O threads (default: ${DEFAULT-VALUE}).")
    int ioThreads = 4;

    @Option(names = "--backward", description = "Backward requests (q, k, v, do, lse, delta in; dq, dk, dv out)"
        + " instead of forward ones.")
    boolean backward;

    @Override
    public Integer call() throws Exception {
      ServerContext ctx = new ServerContext();
      ctx.backend = backend;
      ctx.cudaDevice = gpu.forBackend(backend);
      ctx.ioThreads = ioThreads;
      ctx.maxFrameBytes = 1L << 30;
      ctx.maxMemoryBytes = 32L << 30;
      int[] lengths = new int[docs];
      java.util.Arrays.fill(lengths, docLen);
      AttentionShape shape = new AttentionShape(heads, kvHeads, headDim, DType.BF16, AttentionShape.defaultScale(headDim));
      try (BufferAllocator root = new RootAllocator()) {
        ServerBench.Result r = ServerBench.run(ctx, shape, lengths, backward, connections, inflight,
            Duration.ofSeconds(warmupSeconds),
            Duration.ofSeconds(seconds),
            root, KERNEL_MILLIS);
        r.print(System.out);
      }
      return 0;
    }
  }
}
