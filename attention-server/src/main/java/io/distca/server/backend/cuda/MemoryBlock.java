package io.distca.server.backend.cuda;

/** One contiguous allocation (device, pinned host or plain host memory) at a raw address. */
abstract class MemoryBlock implements AutoCloseable {
  private final long address;
  private final long bytes;
  private boolean closed;

  MemoryBlock(long address, long bytes) {
    this.address = address;
    this.bytes = bytes;
  }

  final long address() {
    return address;
  }

  final long bytes() {
    return bytes;
  }

  /** Returns the memory to where it came from; called once. */
  abstract void free();

  /** Frees the memory; idempotent. */
  @Override
  public final void close() {
    if (!closed) {
      closed = true;
      free();
    }
  }
}
