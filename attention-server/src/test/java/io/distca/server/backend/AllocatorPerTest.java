package io.distca.server.backend;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/**
 * Tests that allocate Arrow memory: a fresh root allocator for each test, closed after it (after a
 * subclass's own clean-up), so that a buffer a test leaks fails that test.
 */
public abstract class AllocatorPerTest {
  protected BufferAllocator allocator;

  @BeforeEach
  final void openAllocator() {
    allocator = new RootAllocator();
  }

  @AfterEach
  final void closeAllocator() {
    allocator.close();
  }
}
