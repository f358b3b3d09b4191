package io.distca.server.backend.cuda;

/**
 * Places buffers one after another at aligned offsets, so that all buffers of a batch fit in one
 * arena block. Alignment 256 bytes keeps every buffer aligned for 16-byte vector and TMA accesses.
 */
final class ArenaLayout {
  static final long ALIGNMENT = 256;

  private long end;

  /** Reserves {@code bytes} and returns their offset; zero-length buffers still get a distinct offset. */
  long add(long bytes) {
    if (bytes < 0) {
      throw new IllegalArgumentException("negative buffer size " + bytes);
    }
    long offset = end;
    end = Math.addExact(offset, alignUp(Math.max(bytes, 1)));
    return offset;
  }

  long totalBytes() {
    return end;
  }

  static long alignUp(long bytes) {
    return Math.addExact(bytes, ALIGNMENT - 1) & -ALIGNMENT;
  }
}
