package io.distca.server.backend.cpu;

import io.distca.protocol.model.AttentionShape;
import io.distca.server.backend.AttentionBatch;

/** What a forward or backward pass over one batch shares: the batch, its shape and the tile sizes. */
abstract class TiledPass {
  final AttentionBatch batch;
  final int headsQ;
  final int headsKv;
  final int headDim;
  final int groupSize;
  final float scale;
  final int queryBlock;
  final int keyBlock;

  TiledPass(AttentionBatch batch, CpuBackendOptions options) {
    this.batch = batch;
    AttentionShape shape = batch.shape();
    this.headsQ = shape.headsQ();
    this.headsKv = shape.headsKv();
    this.headDim = shape.headDim();
    this.groupSize = shape.groupSize();
    this.scale = shape.scale();
    this.queryBlock = options.queryBlock();
    this.keyBlock = options.keyBlock();
  }

  abstract void run(WorkerPool pool);
}
