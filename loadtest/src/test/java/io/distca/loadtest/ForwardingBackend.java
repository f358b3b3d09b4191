package io.distca.loadtest;

import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;

/**
 * A backend that passes name, device, forward, backward and close to {@code inner}: the tests' wrong
 * and hanging servers override what they change. The asynchronous submits keep the interface's
 * defaults, which call this object's forward and backward.
 */
abstract class ForwardingBackend implements AttentionBackend {
  protected final AttentionBackend inner;

  ForwardingBackend(AttentionBackend inner) {
    this.inner = inner;
  }

  @Override
  public String name() {
    return inner.name();
  }

  @Override
  public String device() {
    return inner.device();
  }

  @Override
  public void forward(AttentionBatch batch) {
    inner.forward(batch);
  }

  @Override
  public void backward(AttentionBatch batch) {
    inner.backward(batch);
  }

  @Override
  public void close() {
    inner.close();
  }
}
