package io.distca.server;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.TensorSet;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.QuerySlice;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A validated attention request ready for the rebatcher: backend views over the received tensors,
 * output tensors allocated for the response, and a future completed once the batch that carried it
 * has run. Owns the received message and (until handed to the response) the output tensors.
 */
final class PreparedRequest implements AutoCloseable {
  final Message request;
  final AttentionRequest meta;
  final Phase phase;
  final AttentionShape shape;
  final List<KvSegment> segments;
  final List<QuerySlice> slices;
  final TensorSet outputs;
  final double flops;
  final long bytes;
  final long queryTokens;
  final long admittedNanos;
  final CompletableFuture<BatchStats> done = new CompletableFuture<>();
  private boolean outputsHandedOver;

  PreparedRequest(
      Message request,
      AttentionRequest meta,
      Phase phase,
      AttentionShape shape,
      List<KvSegment> segments,
      List<QuerySlice> slices,
      TensorSet outputs,
      double flops,
      long queryTokens) {
    this.request = request;
    this.meta = meta;
    this.phase = phase;
    this.shape = shape;
    this.segments = segments;
    this.slices = slices;
    this.outputs = outputs;
    this.flops = flops;
    this.bytes = request.tensors() == null ? 0 : request.tensors().byteSize();
    this.queryTokens = queryTokens;
    this.admittedNanos = System.nanoTime();
  }

  /** Key under which requests may fuse: same phase and same shape. */
  BatchKey batchKey() {
    return new BatchKey(phase, shape);
  }

  /** The response takes the outputs; closing this request then leaves them alone. */
  TensorSet takeOutputs() {
    outputsHandedOver = true;
    return outputs;
  }

  @Override
  public void close() {
    request.close();
    if (!outputsHandedOver) {
      outputs.close();
    }
  }

  record BatchKey(Phase phase, AttentionShape shape) {}

  /** What the batch that carried a request looked like, for the response metadata and metrics. */
  record BatchStats(long queueNanos, long computeNanos, int fusedRequests, int slices, double flops) {}
}
