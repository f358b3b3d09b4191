package io.distca.protocol.wire;

import org.apache.arrow.memory.BufferAllocator;

/**
 * Settings of one side of the wire protocol, shared by the decoders and the encoder so that servers
 * and clients set up channels identically. Set what differs from the defaults, then
 * {@link #conclude()} validates everything at once; a concluded options object is frozen.
 */
public final class WireOptions {
  /** Default largest frame (header + metadata + padding + payload) a peer accepts: 256 MiB. */
  public static final long DEFAULT_MAX_FRAME_BYTES = 256L << 20;
  /** Smallest allowed limit: every control message must fit. */
  public static final long MIN_MAX_FRAME_BYTES = 4096;
  /** Netty buffers are int-indexed and a frame is buffered whole before decoding. */
  public static final long MAX_MAX_FRAME_BYTES = Integer.MAX_VALUE;
  /** Default retry hint of the OVERLOADED error sent when the receive allocator is full. */
  public static final long DEFAULT_OVERLOAD_RETRY_AFTER_MS = 100;

  private long maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  private long overloadRetryAfterMs = DEFAULT_OVERLOAD_RETRY_AFTER_MS;
  private BufferAllocator allocator;
  private LargeFrameAllocator largeFrameAllocator = LargeFrameAllocator.CHANNEL;
  private boolean concluded;

  /**
   * Largest frame accepted on receive (checked from the header, before buffering the body) and
   * produced on send. Default {@link #DEFAULT_MAX_FRAME_BYTES}; range
   * [{@link #MIN_MAX_FRAME_BYTES}, {@link #MAX_MAX_FRAME_BYTES}].
   */
  public WireOptions maxFrameBytes(long maxFrameBytes) {
    checkMutable();
    this.maxFrameBytes = maxFrameBytes;
    return this;
  }

  public long maxFrameBytes() {
    return maxFrameBytes;
  }

  /**
   * Arrow allocator that received tensor payloads are accounted to (required; no default). Its limit
   * bounds the payload memory of decoded, not yet closed messages: past it a frame is answered with
   * OVERLOADED. Give each connection a child allocator to find leaks per connection, and close it
   * only after every message decoded on that connection is closed.
   */
  public WireOptions allocator(BufferAllocator allocator) {
    checkMutable();
    this.allocator = allocator;
    return this;
  }

  public BufferAllocator allocator() {
    return allocator;
  }

  /**
   * Allocates the buffers that large frames are assembled in (see {@link LargeFrameAllocator}).
   * Default {@link LargeFrameAllocator#CHANNEL}: the channel's allocator.
   */
  public WireOptions largeFrameAllocator(LargeFrameAllocator largeFrameAllocator) {
    checkMutable();
    this.largeFrameAllocator = largeFrameAllocator;
    return this;
  }

  public LargeFrameAllocator largeFrameAllocator() {
    return largeFrameAllocator;
  }

  /** Retry hint carried by OVERLOADED when the allocator refuses a payload. Default 100 ms; >= 0. */
  public WireOptions overloadRetryAfterMs(long overloadRetryAfterMs) {
    checkMutable();
    this.overloadRetryAfterMs = overloadRetryAfterMs;
    return this;
  }

  public long overloadRetryAfterMs() {
    return overloadRetryAfterMs;
  }

  /**
   * Validates all settings and freezes them; idempotent.
   *
   * @throws IllegalStateException naming the first invalid setting
   */
  public WireOptions conclude() {
    if (concluded) {
      return this;
    }
    if (allocator == null) {
      throw new IllegalStateException("allocator is required");
    }
    if (largeFrameAllocator == null) {
      throw new IllegalStateException("largeFrameAllocator must not be null (LargeFrameAllocator.CHANNEL is the default)");
    }
    if (maxFrameBytes < MIN_MAX_FRAME_BYTES || maxFrameBytes > MAX_MAX_FRAME_BYTES) {
      throw new IllegalStateException("maxFrameBytes must be in [" + MIN_MAX_FRAME_BYTES + ", " + MAX_MAX_FRAME_BYTES
          + "], got " + maxFrameBytes);
    }
    if (overloadRetryAfterMs < 0) {
      throw new IllegalStateException("overloadRetryAfterMs must be >= 0, got " + overloadRetryAfterMs);
    }
    concluded = true;
    return this;
  }

  private void checkMutable() {
    if (concluded) {
      throw new IllegalStateException("WireOptions are frozen after conclude()");
    }
  }

  @Override
  public String toString() {
    return "WireOptions(maxFrameBytes=" + maxFrameBytes + ", allocator="
        + (allocator == null ? null : allocator.getName()) + ", overloadRetryAfterMs=" + overloadRetryAfterMs
        + (largeFrameAllocator == LargeFrameAllocator.CHANNEL ? "" : ", largeFrameAllocator=" + largeFrameAllocator) + ")";
  }
}
