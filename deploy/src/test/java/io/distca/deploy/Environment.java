package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/**
 * What the deployment tests need from the machine (Docker, a Prometheus server, kubectl) and the
 * rule for when it is missing: on a developer laptop the test is skipped with the reason; in CI
 * ({@code CI=true}) it fails, so these tests can never silently stop running.
 */
final class Environment {
  private Environment() {}

  static boolean ci() {
    return "true".equalsIgnoreCase(System.getenv("CI"));
  }

  /** Skips (laptop) or fails (CI) unless {@code present}. */
  static void require(boolean present, String what) {
    if (present) {
      return;
    }
    if (ci()) {
      fail(what + " is required in CI (CI=true): .ci/run installs it");
    }
    assumeTrue(false, what + " is not available here: skipped (it is required when CI=true)");
  }

  /** The repository root (this module's parent folder). */
  static Path repoRoot() {
    Path here = Paths.get("").toAbsolutePath();
    for (Path p = here; p != null; p = p.getParent()) {
      if (Files.isDirectory(p.resolve("deploy")) && Files.isRegularFile(p.resolve("pom.xml"))
          && Files.isDirectory(p.resolve("protocol"))) {
        return p;
      }
    }
    throw new IllegalStateException("cannot find the repository root above " + here);
  }

  /** The first of {@code candidates} that is an executable file, or the one found on PATH; null if none. */
  static Path executable(String name, String... candidates) {
    for (String c : candidates) {
      Path p = Paths.get(c);
      if (Files.isExecutable(p)) {
        return p;
      }
    }
    String path = System.getenv("PATH");
    if (path != null) {
      for (String dir : path.split(java.io.File.pathSeparator)) {
        Path p = Paths.get(dir, name);
        if (Files.isExecutable(p)) {
          return p;
        }
      }
    }
    return null;
  }
}
