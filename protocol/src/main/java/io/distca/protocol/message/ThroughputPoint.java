package io.distca.protocol.message;

/**
 * One point of a server's calibration table: forward throughput measured on a causal task of
 * {@code qLen} query rows over {@code kvLen} keys. Short tasks run below the long-task rate, which
 * is why a server reports a table and not only one number.
 */
public record ThroughputPoint(int qLen, int kvLen, double flopsPerSecond) {}
