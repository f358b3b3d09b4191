package io.distca.server.backend.cuda;

/** Allocates blocks of one kind of memory; {@code purpose} names the allocation in errors. */
@FunctionalInterface
interface MemorySource<B extends MemoryBlock> {
  B allocate(long bytes, String purpose);
}
