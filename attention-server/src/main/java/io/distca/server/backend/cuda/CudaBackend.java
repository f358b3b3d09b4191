package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuMemsetD32Async;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;
import static jcuda.driver.JCudaDriver.cuStreamWaitEvent;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.wire.LargeFrameAllocator;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.BackendMemory;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.BatchValidation;
import io.distca.server.backend.PinnedTransfers;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import jcuda.Pointer;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.util.MemoryUtil;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs fused attention batches on one GPU through the kernels of native/ (distca_attn.h).
 *
 * <h2>Pipeline</h2>
 * A batch goes through: plan (descriptors and work list, on the host), gather (request tensors into
 * a slot's pinned staging), upload (one host-to-device copy on the upload stream), kernels (compute
 * stream, after the upload's event), download (one device-to-host copy on the download stream, after
 * the kernels' event), scatter (pinned staging into the batch's output tensors, on the completion
 * thread). With {@link CudaBackendOptions#pipelineDepth()} slots, the upload of batch n+1, the kernels
 * of batch n and the download of batch n-1 overlap, and the host gathers one batch while it scatters
 * another.
 *
 * <h2>Pinned tensors</h2>
 * With {@link CudaBackendOptions#pinnedReceive()} (the default) the backend keeps a pool of
 * page-locked host buffers ({@link PinnedBufferPool}, grown up to {@link CudaBackendOptions#pinnedPoolBytes()}
 * and reused): the server receives large frames into them ({@link #frameAllocator()}) and allocates
 * output tensors from them ({@link #allocateOutput}). A tensor copy whose host side lies inside one
 * buffer of the pool (and is at least {@link CudaBackendOptions#directTransferMinBytes()} long) skips
 * staging: it is uploaded with its own cuMemcpyHtoDAsync from the tensor's address on the upload stream,
 * or downloaded with its own cuMemcpyDtoHAsync into the tensor on the download stream, ordered by the
 * same events as the staged copies ({@link DirectCopies}). Everything else (tensors in ordinary memory,
 * short runs such as a slice's LSE, the descriptors) keeps the gather/scatter path. The batch's tensors
 * are released by their owner only after its future completes, i.e. after the events that cover these
 * copies; a batch that fails after enqueuing copies waits for its streams before failing.
 *
 * <h2>Asynchronous use</h2>
 * {@link #submitForward} and {@link #submitBackward} return once the batch is enqueued on the GPU;
 * their future completes, with the batch's {@link BatchTimings}, once its outputs are in the batch's
 * tensors. The batch's tensors must stay alive until then. A submission blocks while every slot is
 * in flight: that is the backend's back-pressure. Futures complete on the backend's completion
 * thread, so dependent stages that submit again must use the {@code *Async} variants of
 * CompletableFuture. {@link #forward} and {@link #backward} are submit-and-wait.
 *
 * <h2>Failure</h2>
 * Bad batches fail their future with {@link IllegalArgumentException} and leave the backend usable;
 * a shape the kernels lack fails with {@link UnsupportedShapeException}. A CUDA error that surfaces
 * while waiting for a batch (an asynchronous kernel fault leaves the context unusable) fails that
 * batch and every later one with {@link CudaCallException}: the server should replace the backend.
 */
public final class CudaBackend implements AttentionBackend, BackendMemory, PinnedTransfers {
  public static final String NAME = "cuda";

  private static final Logger LOG = LoggerFactory.getLogger(CudaBackend.class);

  private final CudaBackendOptions options;
  private final CudaDevice device;
  private final AttentionKernels kernels;
  private final CUstream uploadStream = new CUstream();
  private final CUstream computeStream = new CUstream();
  private final CUstream downloadStream = new CUstream();
  private final PipelineSlot[] slots;
  private final BlockingQueue<PipelineSlot> freeSlots;
  private final BlockingQueue<InFlight> inFlight = new LinkedBlockingQueue<>();
  private final ReentrantLock enqueueLock = new ReentrantLock();
  private final ParallelCopier copier;
  private final Thread completer;
  private volatile RuntimeException fatal;
  private volatile boolean closed;
  private boolean released;
  /** Null with {@link CudaBackendOptions#pinnedReceive()} off. */
  private final PinnedBuffers pinned;
  private final AtomicLong directUploadBytes = new AtomicLong();
  private final AtomicLong stagedUploadBytes = new AtomicLong();
  private final AtomicLong directDownloadBytes = new AtomicLong();
  private final AtomicLong stagedDownloadBytes = new AtomicLong();
  private volatile int leakedAtClose;
  /** Null when forwards and backwards run on the warp-specialized kernels where the image has them; else why not. */
  private final String warpSpecializedUnavailable;
  private final AtomicLong warpSpecializedForwards = new AtomicLong();
  private final AtomicLong warpSpecializedBackwards = new AtomicLong();
  private final AtomicLong groupSplitBackwards = new AtomicLong();
  private final AtomicLong chunkedBackwards = new AtomicLong();
  private final AtomicLong q128Backwards = new AtomicLong();
  private final AtomicLong bandedLaunches = new AtomicLong();

  private record InFlight(
      FusedBatchPlan plan, AttentionBatch batch, PipelineSlot slot, PinnedHostMemory.Block host, CopyList scatter,
      CompletableFuture<BatchTimings> result, long submittedNanos, long gatherNanos) {}

  /** Sentinel that stops the completion thread. */
  private static final InFlight STOP = new InFlight(null, null, null, null, null, null, 0, 0);

  /** How long close() waits for pinned buffers still held by messages before leaving them to be freed on release. */
  private static final long PINNED_RETURN_WAIT_MILLIS = 5_000;

  /**
   * Opens the GPU, loads the kernels and allocates the pipeline.
   *
   * @throws KernelsUnavailableException when neither the kernel file nor the resource exists
   * @throws CudaCallException when the driver, the device or the module fails
   */
  public static CudaBackend open(CudaBackendOptions options) {
    options.conclude();
    KernelImage image = KernelImage.find(options);
    if (image == null) {
      throw new KernelsUnavailableException("no CUDA kernel image: resource " + options.kernelResource()
          + " is not on the class path (the build had no nvcc) and no kernel file was given");
    }
    return new CudaBackend(options, image);
  }

  private CudaBackend(CudaBackendOptions options, KernelImage image) {
    this.options = options;
    this.device = CudaDevice.open(options.deviceOrdinal());
    AttentionKernels loaded = null;
    PipelineSlot[] created = new PipelineSlot[options.pipelineDepth()];
    boolean streams = false;
    try {
      loaded = new AttentionKernels(device, image);
      createStream(uploadStream, "upload");
      createStream(computeStream, "compute");
      createStream(downloadStream, "download");
      streams = true;
      for (int i = 0; i < created.length; i++) {
        created[i] = new PipelineSlot(i, device, options);
      }
    } catch (RuntimeException e) {
      for (PipelineSlot s : created) {
        if (s != null) {
          s.close();
        }
      }
      if (streams) {
        destroyStreams();
      }
      if (loaded != null) {
        loaded.close();
      }
      device.close();
      throw e;
    }
    this.kernels = loaded;
    this.slots = created;
    this.freeSlots = new ArrayBlockingQueue<>(created.length);
    for (PipelineSlot s : created) {
      freeSlots.add(s);
    }
    this.copier = new ParallelCopier(options.stagingThreads());
    // Buffers still leased when the pool closes are freed when released; the context must outlive them.
    this.pinned = options.pinnedReceive()
        ? new PinnedBuffers(new PinnedBufferPool("gpu" + device.ordinal(), new PinnedHostMemory(device),
            options.pinnedPoolBytes(), this::releaseDevice))
        : null;
    this.warpSpecializedUnavailable = options.warpSpecializedKernels() ? TensorMaps.unavailableReason() : "turned off";
    if (warpSpecializedUnavailable != null && kernels.geometries().values().stream().anyMatch(
        g -> g.hasWarpSpecializedForward() || g.hasWarpSpecializedBackward())) {
      LOG.info("CUDA backend: the warp-specialized kernels are not used: {}", warpSpecializedUnavailable);
    }
    this.completer = new Thread(this::completeBatches, "distca-cuda-completion-gpu" + device.ordinal());
    this.completer.setDaemon(true);
    this.completer.start();
    LOG.info("CUDA backend on {}: kernels from {} (head dims {}), {} pipeline slots, {} staging threads, pinned pool {}",
        device, kernels.origin(), kernels.geometries().keySet(), slots.length, options.stagingThreads(),
        pinned == null ? "off" : (options.pinnedPoolBytes() >> 20) + " MiB");
  }

  private void createStream(CUstream stream, String what) {
    // Non-blocking: the legacy default stream, which other code in the process may use, must not
    // serialize against the pipeline.
    Driver.check("cuStreamCreate", "creating the " + what + " stream",
        () -> cuStreamCreate(stream, CUstream_flags.CU_STREAM_NON_BLOCKING));
  }

  @Override
  public String name() {
    return NAME;
  }

  @Override
  public String device() {
    return "GPU " + device.ordinal() + ": " + device.name();
  }

  @Override
  public String failure() {
    RuntimeException f = fatal;
    return f == null ? null : "CUDA backend on GPU " + device.ordinal() + " (" + device.name() + ") failed: " + f.getMessage();
  }

  public CudaDevice gpu() {
    return device;
  }

  /** Whether the loaded kernels run batches of this shape (bf16/fp16 and a head dim the module has). */
  public boolean supports(AttentionShape shape) {
    return kernels.supports(shape.dtype(), shape.headDim());
  }

  @Override
  public void forward(AttentionBatch batch) {
    await(submitForward(batch));
  }

  @Override
  public void backward(AttentionBatch batch) {
    await(submitBackward(batch));
  }

  /** Enqueues a forward batch; the future completes once O and LSE are in the batch's tensors. */
  public CompletableFuture<BatchTimings> submitForward(AttentionBatch batch) {
    return submit(FusedBatchPlan.Pass.FORWARD, batch);
  }

  /** Enqueues a backward batch; the future completes once dQ, dK and dV are in the batch's tensors. */
  public CompletableFuture<BatchTimings> submitBackward(AttentionBatch batch) {
    return submit(FusedBatchPlan.Pass.BACKWARD, batch);
  }

  private CompletableFuture<BatchTimings> submit(FusedBatchPlan.Pass pass, AttentionBatch batch) {
    long submitted = System.nanoTime();
    CompletableFuture<BatchTimings> result = new CompletableFuture<>();
    FusedBatchPlan plan;
    try {
      requireUsable();
      BatchValidation.requireWellFormed(batch,
          pass == FusedBatchPlan.Pass.FORWARD ? BatchValidation.Pass.FORWARD : BatchValidation.Pass.BACKWARD);
      KernelGeometry geometry = geometryFor(batch.shape());
      plan = pass == FusedBatchPlan.Pass.FORWARD
          ? FusedBatchPlan.forward(batch, geometry)
          : FusedBatchPlan.backward(batch, geometry,
              // group splits (distca_attn.h section 9): the warp-specialized kernel's grid, where the
              // image has the kernel that takes them
              splitsPossible(batch.shape(), geometry) ? persistentCtas() : 0,
              FusedBatchPlan.leanDram(device.dramBytesPerSm()));
    } catch (RuntimeException e) {
      result.completeExceptionally(e);
      return result;
    }
    PipelineSlot slot;
    try {
      slot = takeSlot();
    } catch (RuntimeException e) {
      result.completeExceptionally(e);
      return result;
    }
    boolean handedOver = false;
    boolean enqueued = false;
    try {
      requireUsable();
      device.bind();
      DeviceMemory.Block deviceBlock = slot.device.reserve(plan.layout.deviceBytes());
      PinnedHostMemory.Block hostBlock = slot.pinned.reserve(plan.layout.pinnedBytes());
      long gatherStart = System.nanoTime();
      StagingCopies.writeDescriptors(plan, hostBlock.address());
      CopyList copies = new CopyList();
      DirectCopies directIn = directCopies();
      StagingCopies.gather(plan, batch, hostBlock.address(), copies, directIn);
      CopyList scatter = new CopyList();
      DirectCopies directOut = directCopies();
      StagingCopies.scatter(plan, batch, hostBlock.address(), scatter, directOut);
      enqueued = true;
      uploadWhileGathering(plan, slot, copies, directIn, deviceBlock, hostBlock);
      long gatherNanos = System.nanoTime() - gatherStart;
      enqueueLock.lock();
      try {
        enqueueKernelsAndDownload(plan, slot, deviceBlock, hostBlock, directOut);
        inFlight.add(new InFlight(plan, batch, slot, hostBlock, scatter, result, submitted, gatherNanos));
        handedOver = true;
      } finally {
        enqueueLock.unlock();
      }
      count(copies.totalBytes(), directIn, stagedUploadBytes, directUploadBytes);
      count(scatter.totalBytes(), directOut, stagedDownloadBytes, directDownloadBytes);
    } catch (RuntimeException e) {
      noteIfContextLost(e);
      if (enqueued && !handedOver) {
        // Copies already enqueued may still read the batch's tensors (or write its outputs), and the
        // batch's owner frees them as soon as the future fails: wait for the streams first.
        waitForStreamsQuietly();
      }
      result.completeExceptionally(e);
    } finally {
      if (!handedOver) {
        freeSlots.add(slot);
      }
    }
    return result;
  }

  /** An empty list for a batch's direct copies, or null when there is no pinned pool. */
  private DirectCopies directCopies() {
    return pinned == null ? null : new DirectCopies(pinned.pool()::contains, options.directTransferMinBytes());
  }

  private static void count(long stagedBytes, DirectCopies direct, AtomicLong staged, AtomicLong directBytes) {
    staged.addAndGet(stagedBytes);
    if (direct != null) {
      directBytes.addAndGet(direct.totalBytes());
    }
  }

  private CUstream[] streams() {
    return new CUstream[] {uploadStream, computeStream, downloadStream};
  }

  private void waitForStreamsQuietly() {
    for (CUstream s : streams()) {
      try {
        Driver.check("cuStreamSynchronize", "waiting for a failed batch's copies", () -> cuStreamSynchronize(s));
      } catch (RuntimeException e) {
        LOG.warn("waiting for the copies of a failed batch failed", e);
      }
    }
  }

  private PipelineSlot takeSlot() {
    try {
      while (true) {
        PipelineSlot slot = freeSlots.poll(100, TimeUnit.MILLISECONDS);
        if (slot != null) {
          return slot;
        }
        requireUsable();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for a free CUDA pipeline slot", e);
    }
  }

  private KernelGeometry geometryFor(AttentionShape shape) {
    KernelGeometry g = kernels.geometry(shape.headDim());
    if (!DistcaAttnAbi.supportsDtype(shape.dtype()) || g == null) {
      throw new UnsupportedShapeException("the CUDA kernels run bf16 and fp16 with head_dim in "
          + kernels.geometries().keySet() + "; this batch is " + shape.dtype() + " with head_dim " + shape.headDim());
    }
    return g;
  }

  /**
   * Gathers the inputs and uploads them; with {@link CudaBackendOptions#transferChunkBytes()} set,
   * chunk by chunk, each chunk uploaded as soon as it is staged so that the upload hides behind the
   * gather. The gather list runs in staging order, so the first n bytes of it fill a prefix of the
   * staging block (alignment gaps between buffers travel along). Direct copies (tensors in pinned
   * memory) are enqueued with the first chunk, and staged uploads skip the ranges they cover.
   */
  private void uploadWhileGathering(FusedBatchPlan plan, PipelineSlot slot, CopyList copies, DirectCopies direct,
      DeviceMemory.Block dev, PinnedHostMemory.Block host) {
    String context = describe(plan, slot);
    long total = copies.totalBytes();
    long chunk = PipelineSlot.transferChunkBytes(total, options.transferChunkBytes());
    long uploaded = 0;
    boolean started = false;
    for (long position = 0; position < total; position += chunk) {
      long end = Math.min(total, position + chunk);
      copier.run(copies, position, end);
      if (!started) {
        // Marked at the first copy, not before the gather, so uploadMillis is transfer time.
        startUpload(slot, direct, dev, context);
        started = true;
      }
      long staged = copies.destinationEnd(end) - host.address();
      upload(dev, host, direct, uploaded, staged, context);
      uploaded = staged;
    }
    if (!started) {
      startUpload(slot, direct, dev, context);
    }
    // The rest: descriptors (written first) and the gaps after the last tensor.
    upload(dev, host, direct, uploaded, plan.layout.inputBytes(), context);
    record(slot.uploaded, uploadStream, context);
  }

  private void startUpload(PipelineSlot slot, DirectCopies direct, DeviceMemory.Block dev, String context) {
    record(slot.uploadStart, uploadStream, context);
    if (direct != null) {
      direct.split(0, Long.MAX_VALUE, (offset, hostAddress, bytes) -> Driver.check(
          "cuMemcpyHtoDAsync(" + bytes + " bytes to " + offset + ", direct)", "uploading a pinned tensor of the " + context,
          () -> cuMemcpyHtoDAsync(dev.at(offset), hostPointer(hostAddress, bytes), bytes, uploadStream)), (offset, bytes) -> {});
    }
  }

  /** Uploads staging bytes [from, to), skipping what direct copies cover. */
  private void upload(
      DeviceMemory.Block dev, PinnedHostMemory.Block host, DirectCopies direct, long from, long to, String context) {
    if (to <= from) {
      return;
    }
    if (direct == null) {
      upload(dev, host, from, to - from, context);
      return;
    }
    direct.split(from, to, (offset, hostAddress, bytes) -> {}, (offset, bytes) -> upload(dev, host, offset, bytes, context));
  }

  private void upload(DeviceMemory.Block dev, PinnedHostMemory.Block host, long from, long bytes, String context) {
    Driver.check("cuMemcpyHtoDAsync(" + bytes + " bytes at " + from + ")", "uploading the " + context,
        () -> cuMemcpyHtoDAsync(dev.at(from), host.at(from), bytes, uploadStream));
  }

  /** A JCuda pointer to raw host memory (a pinned tensor), through a direct buffer view. */
  private static Pointer hostPointer(long address, long bytes) {
    if (bytes > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("direct copy of " + bytes + " bytes is larger than a frame can be");
    }
    return Pointer.to(MemoryUtil.directBuffer(address, (int) bytes));
  }

  /**
   * The kernels (after the upload's event) and the chunked download (after the kernels' event): each
   * chunk's direct pieces straight into their pinned output tensors, the rest into staging.
   */
  private void enqueueKernelsAndDownload(FusedBatchPlan plan, PipelineSlot slot, DeviceMemory.Block dev,
      PinnedHostMemory.Block host, DirectCopies direct) {
    FusedBatchPlan.Layout at = plan.layout;
    String context = describe(plan, slot);
    Driver.check("cuStreamWaitEvent(upload)", "ordering the kernels of the " + context,
        () -> cuStreamWaitEvent(computeStream, slot.uploaded, 0));
    // The host's share (tensor maps, parameter blocks) before the start event: on an idle stream
    // the event completes at once, and what the host did after it would count as kernel time.
    List<Runnable> kernelOps = kernelOps(plan, dev.address());
    record(slot.kernelsStart, computeStream, context);
    kernelOps.forEach(Runnable::run);
    record(slot.kernelsDone, computeStream, context);

    Driver.check("cuStreamWaitEvent(kernels)", "ordering the download of the " + context,
        () -> cuStreamWaitEvent(downloadStream, slot.kernelsDone, 0));
    record(slot.downloadStart, downloadStream, context);
    long chunk = PipelineSlot.transferChunkBytes(at.outputBytes(), options.transferChunkBytes());
    int k = 0;
    for (long offset = 0; offset < at.outputBytes(); offset += chunk, k++) {
      long from = at.outputStart() + offset;
      long to = from + Math.min(chunk, at.outputBytes() - offset);
      if (direct == null) {
        download(dev, host, from, to - from, context);
      } else {
        direct.split(from, to, (devOffset, hostAddress, bytes) -> Driver.check(
            "cuMemcpyDtoHAsync(" + bytes + " bytes from " + devOffset + ", direct)",
            "downloading into a pinned tensor of the " + context,
            () -> cuMemcpyDtoHAsync(hostPointer(hostAddress, bytes), dev.at(devOffset), bytes, downloadStream)),
            (devOffset, bytes) -> download(dev, host, devOffset, bytes, context));
      }
      record(slot.downloadedChunks[k], downloadStream, context);
    }
    record(slot.downloaded, downloadStream, context);
  }

  private void download(DeviceMemory.Block dev, PinnedHostMemory.Block host, long from, long bytes, String context) {
    Driver.check("cuMemcpyDtoHAsync(" + bytes + " bytes at " + from + ")", "downloading the " + context,
        () -> cuMemcpyDtoHAsync(host.at(from), dev.at(from), bytes, downloadStream));
  }

  private static String describe(FusedBatchPlan plan, PipelineSlot slot) {
    return plan.pass.name().toLowerCase(java.util.Locale.ROOT) + " batch in pipeline slot " + slot.index;
  }

  private static void record(jcuda.driver.CUevent event, CUstream stream, String context) {
    Driver.check("cuEventRecord", "marking the " + context, () -> cuEventRecord(event, stream));
  }

  /**
   * The batch's work on the compute stream (memsets and kernel launches), each op enqueueing one
   * piece, with every parameter block and tensor map encoded here, before any op runs.
   */
  private List<Runnable> kernelOps(FusedBatchPlan plan, long base) {
    List<Runnable> ops = new ArrayList<>();
    AttentionShape shape = plan.shape;
    KernelGeometry g = kernels.geometry(shape.headDim());
    FusedBatchPlan.Layout at = plan.layout;
    if (plan.pass == FusedBatchPlan.Pass.FORWARD) {
      DistcaAttnAbi.ForwardParams params = new DistcaAttnAbi.ForwardParams(
          base + at.q(), base + at.k(), base + at.v(), base + at.o(), base + at.lse(),
          base + at.slices(), base + at.work(),
          plan.totalQ, plan.totalK, shape.headsQ(), shape.headsKv(), plan.numWork, shape.scale());
      long grid = (long) plan.numWork * shape.headsQ();
      if (grid > 0 && warpSpecializedUnavailable == null && g.hasWarpSpecializedForward()) {
        int box = DistcaAttnAbi.FORWARD_WS_BOX_ROWS;
        int keyBox = DistcaAttnAbi.forwardWsKeyBoxRows(shape.headDim());
        long counter = base + at.tileCounter();
        int[] bands = options.workBands() ? WorkBands.forward(plan, (int) persistentGrid(grid)) : WorkBands.NONE;
        countBands(bands);
        byte[] encoded = params.encodeWs(counter, bands, queryMap(plan, params.q(), box),
            keyMap(plan, params.k(), keyBox), keyMap(plan, params.v(), keyBox), queryMap(plan, params.o(), box));
        ops.add(() -> zeroTileCounter(counter));
        launch(ops, DistcaAttnAbi.forwardWsKernel(shape.dtype(), shape.headDim()), persistentGrid(grid),
            g.forwardWsThreads(), g.forwardWsSharedBytes(), encoded);
        warpSpecializedForwards.incrementAndGet();
        return ops;
      }
      launch(ops, DistcaAttnAbi.forwardKernel(shape.dtype(), shape.headDim()),
          grid, g.forwardThreads(), g.forwardSharedBytes(), params.encode());
      return ops;
    }
    long grid = (long) plan.numWork * shape.headsKv();
    boolean warpSpecialized = grid > 0 && usesWarpSpecializedBackward(g);
    if (plan.groupSplits && !warpSpecialized) {
      throw new IllegalStateException("a backward plan with group splits needs the warp-specialized kernel");
    }
    DistcaAttnAbi.BackwardParams backward = new DistcaAttnAbi.BackwardParams(
        // O is not sent (0): the request's delta = rowsum(dO * O) is already in dsum
        base + at.q(), base + at.k(), base + at.v(), 0, base + at.dout(), base + at.lse(),
        base + at.dsum(), base + at.dqAccum(), base + at.dq(), base + at.dk(), base + at.dv(),
        base + at.slices(), base + at.segments(), base + at.segmentSlices(), base + at.work(),
        plan.totalQ, plan.totalK, shape.headsQ(), shape.headsKv(), plan.numWork, shape.scale(),
        // the warp-specialized backward zeroes the dQ workspace itself (distca_attn.h section 8)
        warpSpecialized ? base + at.dqClaims() : 0);
    byte[] params = backward.encode();
    long elementwiseGrid = g.elementwiseBlocks(plan.totalQ, shape.headsQ());
    // What bwd_pre does besides D (distca_attn.h sections 2 and 8), as a memset: the claim words, or
    // the dQ workspace that the other backward kernels accumulate into
    long rowHeads = (long) plan.totalQ * shape.headsQ();
    if (warpSpecialized) {
      int queryBox = DistcaAttnAbi.BACKWARD_WS_QUERY_BOX_ROWS;
      int keyBox = DistcaAttnAbi.BACKWARD_WS_KEY_BOX_ROWS;
      long counter = base + at.tileCounter();
      long dkvAccum = plan.groupSplits ? base + at.dkvAccum() : 0;
      String kernel = backwardWsKernel(plan);
      boolean chunked = kernel.equals(DistcaAttnAbi.backwardWsChunkedKernel(shape.dtype(), shape.headDim()));
      int[] bands = options.workBands()
          ? WorkBands.backward(plan, (int) persistentGrid(grid), g.backwardBlockM(), chunked) : WorkBands.NONE;
      countBands(bands);
      byte[] encoded = backward.encodeWs(counter, dkvAccum, bands,
          queryMap(plan, backward.q(), queryBox),
          keyMap(plan, backward.k(), keyBox), keyMap(plan, backward.v(), keyBox),
          queryMap(plan, backward.dout(), queryBox),
          TensorMaps.encode(DType.FP32, backward.dqAccum(), Math.max(1, plan.totalQ), shape.headsQ(),
              shape.headDim(), queryBox));
      ops.add(() -> zeroWords(base + at.dqClaims(), rowHeads, "the dQ claim words"));
      ops.add(() -> zeroTileCounter(counter));
      if (plan.groupSplits) {
        ops.add(() -> zeroWords(dkvAccum, kvWords(plan) * 2, "the dK/dV workspace"));
      }
      launch(ops, kernel, persistentGrid(grid), g.backwardWsThreads(), g.backwardWsSharedBytes(), encoded);
      warpSpecializedBackwards.incrementAndGet();
      if (plan.groupSplits) {
        groupSplitBackwards.incrementAndGet();
      } else if (chunked) {
        chunkedBackwards.incrementAndGet();
      } else if (kernel.equals(DistcaAttnAbi.backwardWsQ128Kernel(shape.dtype(), shape.headDim()))) {
        q128Backwards.incrementAndGet();
      }
    } else {
      ops.add(() -> zeroWords(base + at.dqAccum(), rowHeads * shape.headDim(), "the dQ workspace"));
      launch(ops, DistcaAttnAbi.backwardKernel(shape.dtype(), shape.headDim()),
          grid, g.backwardThreads(), g.backwardSharedBytes(), params);
    }
    // section 12: the warp-specialized kernels' dQ workspace has its own conversion
    launch(ops, warpSpecialized ? DistcaAttnAbi.backwardPostWsKernel(shape.dtype(), shape.headDim())
            : DistcaAttnAbi.backwardPostKernel(shape.dtype(), shape.headDim()),
        elementwiseGrid, g.elementwiseThreads(), 0, params);
    if (plan.groupSplits) {
      // section 9: bwd_post converts the workspace's sums, dK times the softmax scale, then dV
      long kvGrid = g.elementwiseBlocks(plan.totalK, shape.headsKv());
      long half = 4L * kvWords(plan);
      launch(ops, DistcaAttnAbi.backwardPostKernel(shape.dtype(), shape.headDim()), kvGrid, g.elementwiseThreads(), 0,
          DistcaAttnAbi.BackwardParams.convertKv(base + at.dkvAccum(), base + at.dk(), plan.totalK, shape.headsKv(),
              shape.scale()));
      launch(ops, DistcaAttnAbi.backwardPostKernel(shape.dtype(), shape.headDim()), kvGrid, g.elementwiseThreads(), 0,
          DistcaAttnAbi.BackwardParams.convertKv(base + at.dkvAccum() + half, base + at.dv(), plan.totalK,
              shape.headsKv(), 1f));
    }
    return ops;
  }

  /** Elements of dK (or dV) of a plan: total_k x heads_kv x head_dim. */
  private static long kvWords(FusedBatchPlan plan) {
    return (long) plan.totalK * plan.shape.headsKv() * plan.shape.headDim();
  }

  private boolean usesWarpSpecializedBackward(KernelGeometry g) {
    return warpSpecializedUnavailable == null && g.hasWarpSpecializedBackward();
  }

  /**
   * The warp-specialized backward's kernel for {@code plan}: with group splits the one that takes
   * them (distca_attn.h section 9), else for groups of {@link DistcaAttnAbi#BWD_CHUNK_MIN_GROUP} heads
   * and more the chunked walk where the image has it (section 10), else where {@link
   * FusedBatchPlan#q128Steps} takes the batch the one in steps of 128 query rows where the image has it
   * (section 13), else the plain one. (distca_host.py's Kernels.bwd_ws_kind decides the same.)
   */
  private String backwardWsKernel(FusedBatchPlan plan) {
    AttentionShape shape = plan.shape;
    if (plan.groupSplits) {
      return DistcaAttnAbi.backwardWsKvKernel(shape.dtype(), shape.headDim());
    }
    String chunked = DistcaAttnAbi.backwardWsChunkedKernel(shape.dtype(), shape.headDim());
    if (options.chunkedBackward() && shape.headsQ() >= DistcaAttnAbi.BWD_CHUNK_MIN_GROUP * shape.headsKv()
        && kernels.hasFunction(chunked)) {
      return chunked;
    }
    String q128 = DistcaAttnAbi.backwardWsQ128Kernel(shape.dtype(), shape.headDim());
    if (options.q128Backward() && plan.q128Steps && kernels.hasFunction(q128)) {
      return q128;
    }
    return DistcaAttnAbi.backwardWsKernel(shape.dtype(), shape.headDim());
  }

  private boolean splitsPossible(AttentionShape shape, KernelGeometry g) {
    return options.groupSplits() && usesWarpSpecializedBackward(g)
        && kernels.hasFunction(DistcaAttnAbi.backwardWsKvKernel(shape.dtype(), shape.headDim()));
  }

  /** Adds the launch of kernel {@code name} on the compute stream to {@code ops}. */
  private void launch(List<Runnable> ops, String name, long grid, int threads, int sharedBytes, byte[] params) {
    ops.add(() -> kernels.launch(name, grid, threads, sharedBytes, computeStream, params));
  }

  /**
   * The persistent warp-specialized kernels' grid (distca_attn.h section 2): one CTA per SM, at
   * most one per tile, or {@link CudaBackendOptions#persistentCtas} where set.
   */
  private long persistentGrid(long tiles) {
    return Math.min(tiles, persistentCtas());
  }

  /** The persistent kernels' most CTAs: one per SM, or {@link CudaBackendOptions#persistentCtas} where set. */
  private int persistentCtas() {
    return options.persistentCtas() > 0 ? options.persistentCtas() : device.multiprocessors();
  }

  /** Zeroes {@code words} 32-bit words at {@code address} on the compute stream. */
  private void zeroWords(long address, long words, String what) {
    if (words > 0) {
      Driver.check("cuMemsetD32Async(" + words + " words)", "zeroing " + what,
          () -> cuMemsetD32Async(DeviceAddress.of(address), 0, words, computeStream));
    }
  }

  /** Zeroes the persistent kernels' tile counter at {@code address} on the compute stream. */
  private void zeroTileCounter(long address) {
    zeroWords(address, 1, "the persistent kernels' tile counter");
  }

  // Tensor maps of the fused query-row and key-row buffers. They need at least one row; a batch
  // without keys never reads them (no tile sees a key).
  private static byte[] queryMap(FusedBatchPlan plan, long address, int boxRows) {
    AttentionShape shape = plan.shape;
    return TensorMaps.encode(shape.dtype(), address, Math.max(1, plan.totalQ), shape.headsQ(), shape.headDim(), boxRows);
  }

  private static byte[] keyMap(FusedBatchPlan plan, long address, int boxRows) {
    AttentionShape shape = plan.shape;
    return TensorMaps.encode(shape.dtype(), address, Math.max(1, plan.totalK), shape.headsKv(), shape.headDim(), boxRows);
  }

  /** The completion thread: waits for each batch's download in submission order, then scatters it. */
  private void completeBatches() {
    try {
      device.bind();
    } catch (RuntimeException e) {
      fatal = e;
      LOG.error("CUDA completion thread could not bind the context", e);
    }
    while (true) {
      InFlight f;
      try {
        f = inFlight.take();
      } catch (InterruptedException e) {
        // Only close() stops this thread, through STOP; an interrupt from elsewhere is ignored.
        continue;
      }
      if (f == STOP) {
        return;
      }
      complete(f);
    }
  }

  private void complete(InFlight f) {
    PipelineSlot slot = f.slot();
    try {
      RuntimeException earlier = fatal;
      if (earlier != null) {
        throw earlier;
      }
      String context = "waiting for the " + describe(f.plan(), slot);
      FusedBatchPlan.Layout at = f.plan().layout;
      long base = f.host().address();
      CopyList copies = f.scatter();
      long chunk = PipelineSlot.transferChunkBytes(at.outputBytes(), options.transferChunkBytes());
      long scattered = 0;
      long scatterNanos = 0;
      int k = 0;
      for (long offset = 0; offset < at.outputBytes(); offset += chunk, k++) {
        synchronize(slot.downloadedChunks[k], context);
        long ready = copies.positionBelowSource(base + at.outputStart() + Math.min(at.outputBytes(), offset + chunk));
        long scatterStart = System.nanoTime();
        copier.run(copies, scattered, ready);
        scatterNanos += System.nanoTime() - scatterStart;
        scattered = ready;
      }
      synchronize(slot.downloaded, context);
      copier.run(copies, scattered, copies.totalBytes());
      float upload = slot.millisBetween(slot.uploadStart, slot.uploaded);
      float kernelsMs = slot.millisBetween(slot.kernelsStart, slot.kernelsDone);
      float download = slot.millisBetween(slot.downloadStart, slot.downloaded);
      long now = System.nanoTime();
      BatchTimings timings = new BatchTimings(f.gatherNanos(), upload, kernelsMs, download, scatterNanos,
          now - f.submittedNanos(), f.plan().layout.inputBytes(), f.plan().layout.outputBytes());
      // The slot goes back before the future completes, so a dependent stage that submits finds it free.
      freeSlots.add(slot);
      f.result().complete(timings);
    } catch (RuntimeException e) {
      noteIfContextLost(e);
      freeSlots.add(slot);
      f.result().completeExceptionally(e);
    }
  }

  private void synchronize(jcuda.driver.CUevent event, String context) {
    try {
      Driver.check("cuEventSynchronize", context, () -> cuEventSynchronize(event));
    } catch (CudaCallException e) {
      // Asynchronous faults (illegal address, launch failure) poison the context for good.
      markFailed(e);
      throw e;
    }
  }

  /**
   * A fault that poisons the context (an earlier batch's or another module's kernel on the same
   * primary context) may surface at any driver call, not only at the event waits: from then on the
   * backend is failed, as after a failed wait.
   */
  private void noteIfContextLost(RuntimeException e) {
    if (fatal == null && e instanceof CudaCallException c && c.contextLost()) {
      markFailed(c);
    }
  }

  /** From now on every batch fails with {@code e} (and {@link #failure()} says so). */
  private void markFailed(RuntimeException e) {
    fatal = e;
    LOG.error("CUDA backend failed; every later batch will fail too", e);
  }

  private void requireUsable() {
    if (closed) {
      throw new IllegalStateException("CUDA backend on " + device.name() + " is closed");
    }
    RuntimeException earlier = fatal;
    if (earlier != null) {
      throw new IllegalStateException("CUDA backend on " + device.name() + " failed earlier: " + earlier.getMessage(), earlier);
    }
  }

  /** Waits for a submitted batch and rethrows its failure as it was raised. */
  static BatchTimings await(CompletableFuture<BatchTimings> future) {
    try {
      return future.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for a CUDA batch", e);
    } catch (ExecutionException | CompletionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof RuntimeException r) {
        throw r;
      }
      if (cause instanceof Error err) {
        throw err;
      }
      throw new IllegalStateException("CUDA batch failed", cause);
    }
  }

  /**
   * Stops new submissions, waits for every batch in flight to complete, then frees the pipeline,
   * the streams, the module and the context. Idempotent.
   */
  @Override
  public void close() {
    synchronized (this) {
      if (released) {
        return;
      }
      released = true;
    }
    closed = true;
    // Every slot back in the free queue means nothing is in flight any more.
    int returned = 0;
    try {
      while (returned < slots.length) {
        PipelineSlot s = freeSlots.poll(1, TimeUnit.SECONDS);
        if (s != null) {
          returned++;
        } else if (!completer.isAlive()) {
          break;
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    inFlight.add(STOP);
    try {
      completer.join(TimeUnit.SECONDS.toMillis(10));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    copier.close();
    RuntimeException failure = null;
    try {
      device.bind();
      for (PipelineSlot s : slots) {
        failure = closeQuietly(s, failure);
      }
      try {
        destroyStreams();
      } catch (RuntimeException e) {
        failure = e;
      }
      failure = closeQuietly(kernels, failure);
    } finally {
      if (pinned == null) {
        failure = closeQuietly(device, failure);
      } else {
        closePinnedPool(); // the pool releases the context once its last buffer is back
      }
    }
    if (failure != null && fatal == null) {
      throw failure;
    }
  }

  /**
   * Closes the pinned pool: idle buffers are freed now; buffers still held (messages not yet closed,
   * responses still being written) are waited for a while, and any left then are logged, counted
   * ({@link #pinnedBuffersLeakedAtClose()}) and freed whenever they are released, with the CUDA context
   * kept until the last one is.
   */
  private void closePinnedPool() {
    PinnedBufferPool pool = pinned.pool();
    pool.close();
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PINNED_RETURN_WAIT_MILLIS);
    while (pool.leased() > 0 && System.nanoTime() < deadline) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    int left = pool.leased();
    if (left > 0) {
      leakedAtClose = left;
      LOG.error("CUDA backend on {} closed with {} pinned buffers still held ({} bytes); they are freed, and the GPU"
          + " context released, when their holders release them", device.name(), left, pool.bytes());
    }
  }

  /** Runs once the pinned pool is closed and every buffer is back (possibly on the thread of the last release). */
  private void releaseDevice() {
    try {
      device.close();
    } catch (RuntimeException e) {
      LOG.error("releasing the CUDA context of {} failed", device.name(), e);
    }
  }

  /** Forward launches that ran on the warp-specialized TMA kernel (distca_attn.h section 7). */
  public long warpSpecializedForwardLaunches() {
    return warpSpecializedForwards.get();
  }

  /** Backward launches whose work list had group splits (distca_attn.h section 9). */
  public long groupSplitBackwardLaunches() {
    return groupSplitBackwards.get();
  }

  /** Backward launches without group splits whose kernel walked the GQA group in chunks (distca_attn.h section 10). */
  public long chunkedBackwardLaunches() {
    return chunkedBackwards.get();
  }

  /** Backward launches in steps of 128 query rows (distca_attn.h section 13: head_dim 64, long slices). */
  public long q128BackwardLaunches() {
    return q128Backwards.get();
  }

  /** Persistent kernel launches (forward or backward) whose work list ran in bands (distca_attn.h section 11). */
  public long bandedLaunches() {
    return bandedLaunches.get();
  }

  private void countBands(int[] bands) {
    if (bands.length > 0) {
      bandedLaunches.incrementAndGet();
    }
  }

  /** Backward launches whose main kernel was the warp-specialized one. */
  public long warpSpecializedBackwardLaunches() {
    return warpSpecializedBackwards.get();
  }

  /** Pinned buffers still held by others when the backend closed (0 when all came back in time). */
  public int pinnedBuffersLeakedAtClose() {
    return leakedAtClose;
  }

  @Override
  public LargeFrameAllocator frameAllocator() {
    return pinned == null ? LargeFrameAllocator.CHANNEL : pinned;
  }

  @Override
  public Tensor allocateOutput(BufferAllocator accounting, AttentionShape batchShape, DType dtype, int... shape) {
    return supports(batchShape) ? allocatePinned(accounting, dtype, shape) : null;
  }

  /**
   * A tensor in a pinned pool buffer, accounted to {@code accounting}, or null when the pool is off or
   * cannot serve: for inputs that should take the direct path (tests, benchmarks).
   */
  public Tensor allocatePinned(BufferAllocator accounting, DType dtype, int... shape) {
    return pinned == null || closed ? null : pinned.allocateTensor(accounting, dtype, shape);
  }

  @Override
  public PinnedTransfers.Stats pinnedStats() {
    PinnedBufferPool pool = pinned == null ? null : pinned.pool();
    return new PinnedTransfers.Stats(pool == null ? 0 : pool.bytes(), pool == null ? 0 : pool.hits(),
        pool == null ? 0 : pool.misses(), directUploadBytes.get(), stagedUploadBytes.get(), directDownloadBytes.get(),
        stagedDownloadBytes.get());
  }

  private void destroyStreams() {
    for (CUstream s : streams()) {
      Driver.check("cuStreamDestroy", "closing the CUDA backend", () -> cuStreamDestroy(s));
    }
  }

  private static RuntimeException closeQuietly(AutoCloseable c, RuntimeException failure) {
    try {
      c.close();
      return failure;
    } catch (Exception e) {
      RuntimeException r = e instanceof RuntimeException re ? re : new IllegalStateException(e);
      if (failure != null) {
        failure.addSuppressed(r);
        return failure;
      }
      return r;
    }
  }

  CudaBackendOptions options() {
    return options;
  }

  /** Device memory reserved by the pipeline slots' arenas (read racily by metrics: a slightly stale value is fine). */
  @Override
  public long deviceBytes() {
    long n = 0;
    for (PipelineSlot s : slots) {
      n += s.device.capacity();
    }
    return n;
  }

  /** Pinned host memory: the pipeline slots' staging arenas plus the pinned buffer pool. */
  @Override
  public long pinnedHostBytes() {
    long n = pinned == null ? 0 : pinned.pool().bytes();
    for (PipelineSlot s : slots) {
      n += s.pinned.capacity();
    }
    return n;
  }

  /** Device and pinned blocks allocated by all slots so far; flat once batch sizes stop growing. */
  int arenaAllocations() {
    int n = 0;
    for (PipelineSlot s : slots) {
      n += s.device.allocations() + s.pinned.allocations();
    }
    return n;
  }
}
