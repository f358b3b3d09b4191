package io.distca.server.backend.cuda;

import java.util.Arrays;

/**
 * Host memory copies to run together: (source address, destination address, bytes) triples with a
 * running byte total, so that a {@link ParallelCopier} can split the whole list into equal byte ranges.
 */
final class CopyList {
  private long[] sources = new long[64];
  private long[] destinations = new long[64];
  /** ends[i] = bytes of copies 0..i inclusive. */
  private long[] ends = new long[64];
  private int size;

  void add(long source, long destination, long bytes) {
    if (bytes < 0) {
      throw new IllegalArgumentException("negative copy length " + bytes);
    }
    if (bytes == 0) {
      return;
    }
    if (size == sources.length) {
      int grown = size * 2;
      sources = Arrays.copyOf(sources, grown);
      destinations = Arrays.copyOf(destinations, grown);
      ends = Arrays.copyOf(ends, grown);
    }
    sources[size] = source;
    destinations[size] = destination;
    ends[size] = totalBytes() + bytes;
    size++;
  }

  int size() {
    return size;
  }

  long totalBytes() {
    return size == 0 ? 0 : ends[size - 1];
  }

  /** Runs the bytes [from, to) of the concatenated copies, splitting copies at the range edges. */
  void copyRange(long from, long to, Memcpy memcpy) {
    if (from >= to) {
      return;
    }
    int i = firstEndingAfter(from);
    while (i < size && from < to) {
      long start = i == 0 ? 0 : ends[i - 1];
      long begin = Math.max(from, start);
      long end = Math.min(to, ends[i]);
      memcpy.copy(sources[i] + (begin - start), destinations[i] + (begin - start), end - begin);
      from = end;
      i++;
    }
  }

  /**
   * The destination address just past the first {@code position} bytes of the list (position > 0).
   * With destinations in increasing order, everything below it is written once those bytes are copied.
   */
  long destinationEnd(long position) {
    if (position <= 0 || position > totalBytes()) {
      throw new IllegalArgumentException("position " + position + " outside (0, " + totalBytes() + "]");
    }
    int i = firstEndingAfter(position - 1);
    long start = i == 0 ? 0 : ends[i - 1];
    return destinations[i] + (position - start);
  }

  /**
   * How many leading bytes of the list read only sources below {@code sourceAddress}, for a list whose
   * sources are in increasing order: once the staging below that address holds data, that prefix can run.
   */
  long positionBelowSource(long sourceAddress) {
    int lo = 0;
    int hi = size;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      long start = mid == 0 ? 0 : ends[mid - 1];
      if (sources[mid] + (ends[mid] - start) <= sourceAddress) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo == size) {
      return totalBytes();
    }
    long start = lo == 0 ? 0 : ends[lo - 1];
    return start + Math.max(0, Math.min(ends[lo] - start, sourceAddress - sources[lo]));
  }

  private int firstEndingAfter(long position) {
    int lo = 0;
    int hi = size - 1;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (ends[mid] > position) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }

  void clear() {
    size = 0;
  }

  /** One raw copy; the production implementation is Arrow's MemoryUtil.copyMemory. */
  @FunctionalInterface
  interface Memcpy {
    void copy(long source, long destination, long bytes);
  }
}
