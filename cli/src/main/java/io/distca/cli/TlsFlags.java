package io.distca.cli;

import io.distca.protocol.tls.TlsOptions;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * The TLS flags of every command that listens or connects, as one picocli mixin so that they are
 * named and read alike everywhere. Each defaults to an environment variable, which suits a
 * Kubernetes pod that mounts a TLS Secret at a fixed path.
 */
final class TlsFlags {
  @Option(names = "--tls-cert", paramLabel = "PEM", defaultValue = "${env:DISTCA_TLS_CERT}",
      description = "Certificate chain this process presents, PEM (a TLS Secret's tls.crt; default: $DISTCA_TLS_CERT).")
  Path certificateChain;

  @Option(names = "--tls-key", paramLabel = "PEM", defaultValue = "${env:DISTCA_TLS_KEY}",
      description = "Its private key, unencrypted PKCS#8 PEM (tls.key; default: $DISTCA_TLS_KEY).")
  Path privateKey;

  @Option(names = "--tls-ca", paramLabel = "PEM", defaultValue = "${env:DISTCA_TLS_CA}",
      description = "CA bundle that peers' certificates must chain to (ca.crt; default: $DISTCA_TLS_CA).")
  Path trustedCertificates;

  @Option(names = "--tls-require-client-cert", defaultValue = "${env:DISTCA_TLS_REQUIRE_CLIENT_CERT:-false}",
      description = "Mutual TLS: refuse clients without a certificate from --tls-ca (default: $DISTCA_TLS_REQUIRE_CLIENT_CERT or false).")
  boolean requireClientCertificate;

  @Option(names = "--tls-no-verify-hostname",
      description = "Do not check that a server's certificate names the host dialed (certificates without the right names).")
  boolean noHostnameVerification;

  /** The TLS options the flags describe (concluded: files read now), or null when no flag asks for TLS. */
  TlsOptions options() {
    if (certificateChain == null && privateKey == null && trustedCertificates == null && !requireClientCertificate) {
      return null;
    }
    return new TlsOptions().certificateChain(certificateChain).privateKey(privateKey)
        .trustedCertificates(trustedCertificates).requireClientCertificate(requireClientCertificate)
        .verifyHostname(!noHostnameVerification).conclude();
  }
}
