package io.distca.server.backend.cuda;

import java.util.Arrays;

/**
 * The part of a batch's transfers that bypasses pinned staging: tensors that already lie in
 * page-locked memory (a {@link PinnedBufferPool} buffer) are copied between their own address and the
 * slot's device arena by the DMA engine, one asynchronous copy each, and only the rest goes through
 * the staging block. {@link StagingCopies} offers every tensor copy here first ({@link #offer}); what
 * is refused stays on the gather/scatter path.
 *
 * <p>Copies are kept in increasing arena order (the order in which {@code StagingCopies} offers them)
 * and a copy that continues the previous one in both arena and host memory (the query rows of
 * consecutive slices of one request, say) is merged into it, provided the merged host range still lies
 * inside one pinned buffer: one copy per tensor per request. {@link #split} then cuts an arena range
 * into the direct pieces and the staged gaps between them, so that a staged upload never overwrites
 * what a direct copy wrote and a staged download only covers what the scatter reads.
 */
final class DirectCopies {
  /** Says whether a host range lies inside one page-locked buffer. */
  @FunctionalInterface
  interface Regions {
    boolean contains(long address, long bytes);
  }

  /** A piece of a direct copy: {@code bytes} between arena offset {@code offset} and host address {@code host}. */
  @FunctionalInterface
  interface DirectPiece {
    void copy(long offset, long host, long bytes);
  }

  /** A gap between direct copies: arena bytes [offset, offset + bytes) that go through staging. */
  @FunctionalInterface
  interface StagedPiece {
    void copy(long offset, long bytes);
  }

  private final Regions regions;
  private final long minBytes;
  private long[] offsets = new long[16];
  private long[] hosts = new long[16];
  private long[] lengths = new long[16];
  private int size;
  private long totalBytes;

  /**
   * @param regions the pinned memory the DMA engine may read and write directly
   * @param minBytes copies shorter than this stay on the staging path (an asynchronous copy costs
   *     microseconds of driver time; a short host copy is cheaper)
   */
  DirectCopies(Regions regions, long minBytes) {
    if (minBytes < 1) {
      throw new IllegalArgumentException("direct copy minimum must be >= 1 byte, got " + minBytes);
    }
    this.regions = regions;
    this.minBytes = minBytes;
  }

  /**
   * Takes the copy of {@code bytes} between host {@code host} and arena offset {@code offset} when the
   * host range is pinned and long enough; false leaves it to the caller's staging path.
   *
   * @throws IllegalArgumentException when the copy does not come after the previous one in the arena
   */
  boolean offer(long host, long offset, long bytes) {
    if (bytes < minBytes || !regions.contains(host, bytes)) {
      return false;
    }
    if (size > 0) {
      int last = size - 1;
      long end = offsets[last] + lengths[last];
      if (offset < end) {
        throw new IllegalArgumentException("direct copy at arena offset " + offset + " overlaps or precedes the previous one,"
            + " which ends at " + end);
      }
      if (offset == end && hosts[last] + lengths[last] == host && regions.contains(hosts[last], lengths[last] + bytes)) {
        lengths[last] += bytes;
        totalBytes += bytes;
        return true;
      }
    }
    if (size == offsets.length) {
      offsets = Arrays.copyOf(offsets, size * 2);
      hosts = Arrays.copyOf(hosts, size * 2);
      lengths = Arrays.copyOf(lengths, size * 2);
    }
    offsets[size] = offset;
    hosts[size] = host;
    lengths[size] = bytes;
    size++;
    totalBytes += bytes;
    return true;
  }

  /** Direct copies after merging. */
  int size() {
    return size;
  }

  long totalBytes() {
    return totalBytes;
  }

  /**
   * Cuts the arena range [from, to) into direct pieces (each copy clipped to the range) and the staged
   * gaps between them, calling each in arena order.
   */
  void split(long from, long to, DirectPiece direct, StagedPiece staged) {
    long at = from;
    for (int i = firstEndingAfter(from); i < size && offsets[i] < to; i++) {
      long start = Math.max(offsets[i], from);
      long end = Math.min(offsets[i] + lengths[i], to);
      if (start > at) {
        staged.copy(at, start - at);
      }
      direct.copy(start, hosts[i] + (start - offsets[i]), end - start);
      at = end;
    }
    if (to > at) {
      staged.copy(at, to - at);
    }
  }

  /** Index of the first copy that ends after {@code offset} (size when none). */
  private int firstEndingAfter(long offset) {
    int lo = 0;
    int hi = size;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (offsets[mid] + lengths[mid] <= offset) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
}
