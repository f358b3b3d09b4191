package io.distca.server.backend.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The kernel fatbin's bytes and where they came from. */
record KernelImage(byte[] bytes, String origin) {

  /** The file named in the options, else the class-path resource; null when neither exists. */
  static KernelImage find(CudaBackendOptions options) {
    Path file = options.kernelFile();
    if (file != null) {
      if (!Files.isRegularFile(file)) {
        throw new IllegalArgumentException("CUDA kernel file " + file + " does not exist");
      }
      try {
        return new KernelImage(Files.readAllBytes(file), file.toString());
      } catch (IOException e) {
        throw new UncheckedIOException("reading CUDA kernel file " + file, e);
      }
    }
    String resource = options.kernelResource();
    try (InputStream in = KernelImage.class.getClassLoader().getResourceAsStream(resource)) {
      if (in == null) {
        return null;
      }
      return new KernelImage(in.readAllBytes(), "classpath:" + resource);
    } catch (IOException e) {
      throw new UncheckedIOException("reading CUDA kernel resource " + resource, e);
    }
  }
}
