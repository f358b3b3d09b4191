package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;

import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;

/**
 * The resources of one batch in flight: its device arena, its pinned staging arena and the events
 * that mark its upload, kernels and download (chunk by chunk) on the three streams. A slot is reused only after its
 * previous batch has been scattered, so growing an arena never pulls memory from under running work.
 */
final class PipelineSlot implements AutoCloseable {
  /** Uploads and downloads go in at most this many chunks. */
  static final int MAX_TRANSFER_CHUNKS = 16;

  final int index;
  final GrowOnlyArena<DeviceMemory.Block> device;
  final GrowOnlyArena<PinnedHostMemory.Block> pinned;
  final CUevent uploadStart;
  final CUevent uploaded;
  final CUevent kernelsStart;
  final CUevent kernelsDone;
  final CUevent downloadStart;
  final CUevent downloaded;
  /** One per download chunk, so that the host scatters each chunk while the next one downloads. */
  final CUevent[] downloadedChunks = new CUevent[MAX_TRANSFER_CHUNKS];
  private final CudaDevice gpu;
  private boolean closed;

  PipelineSlot(int index, CudaDevice gpu, CudaBackendOptions options) {
    this.index = index;
    this.gpu = gpu;
    this.device = new GrowOnlyArena<>("device/slot" + index, new DeviceMemory(gpu),
        options.initialDeviceBytesPerSlot(), CudaBackendOptions.ARENA_GRANULARITY);
    this.pinned = new GrowOnlyArena<>("pinned/slot" + index, new PinnedHostMemory(gpu),
        options.initialPinnedBytesPerSlot(), CudaBackendOptions.ARENA_GRANULARITY);
    CUevent[] events = new CUevent[6 + MAX_TRANSFER_CHUNKS];
    try {
      for (int i = 0; i < events.length; i++) {
        events[i] = event(i);
      }
    } catch (RuntimeException e) {
      for (CUevent created : events) {
        if (created != null) {
          cuEventDestroy(created);
        }
      }
      device.close();
      pinned.close();
      throw e;
    }
    this.uploadStart = events[0];
    this.uploaded = events[1];
    this.kernelsStart = events[2];
    this.kernelsDone = events[3];
    this.downloadStart = events[4];
    this.downloaded = events[5];
    System.arraycopy(events, 6, downloadedChunks, 0, MAX_TRANSFER_CHUNKS);
  }

  /**
   * Chunk size for moving {@code totalBytes} when chunks of {@code preferred} bytes are asked for
   * (0: one chunk, no overlap inside a batch); never more than {@link #MAX_TRANSFER_CHUNKS} chunks.
   */
  static long transferChunkBytes(long totalBytes, long preferred) {
    if (preferred == 0) {
      return Math.max(1, totalBytes);
    }
    return Math.max(preferred, (totalBytes + MAX_TRANSFER_CHUNKS - 1) / MAX_TRANSFER_CHUNKS);
  }

  private CUevent event(int which) {
    CUevent e = new CUevent();
    // Timing stays on: the three intervals per batch are what BatchTimings reports.
    Driver.check("cuEventCreate", "creating event " + which + " of pipeline slot " + index,
        () -> cuEventCreate(e, CUevent_flags.CU_EVENT_DEFAULT));
    return e;
  }

  float millisBetween(CUevent from, CUevent to) {
    float[] ms = new float[1];
    Driver.check("cuEventElapsedTime", "timing pipeline slot " + index, () -> cuEventElapsedTime(ms, from, to));
    return ms[0];
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    gpu.bind();
    for (CUevent e : new CUevent[] {uploadStart, uploaded, kernelsStart, kernelsDone, downloadStart, downloaded}) {
      Driver.check("cuEventDestroy", "closing pipeline slot " + index, () -> cuEventDestroy(e));
    }
    for (CUevent e : downloadedChunks) {
      Driver.check("cuEventDestroy", "closing pipeline slot " + index, () -> cuEventDestroy(e));
    }
    try {
      device.close();
    } finally {
      pinned.close();
    }
  }
}
