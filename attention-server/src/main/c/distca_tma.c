/*
 * JNI shim for the CUDA backend: cuTensorMapEncodeTiled, which JCuda 12.6 does not bind. It encodes
 * the tensor maps of the warp-specialized forward (native/include/distca_attn.h, section 7) for
 * io.distca.server.backend.cuda.TensorMaps.
 *
 * libcuda is opened with dlopen at first use (the driver the JVM already loaded through JCuda), so
 * this library links against nothing but libdl and builds without the CUDA toolkit.
 */
#include <dlfcn.h>
#include <jni.h>
#include <stdint.h>
#include <string.h>

typedef int (*encode_tiled_fn)(void *map, int data_type, uint32_t rank, void *global_address,
                                const uint64_t *global_dim, const uint64_t *global_strides,
                                const uint32_t *box_dim, const uint32_t *element_strides, int interleave,
                                int swizzle, int l2_promotion, int oob_fill);

enum { TENSOR_MAP_BYTES = 128, SWIZZLE_128B = 3, L2_PROMOTION_128B = 2, RESOLVE_FAILED = -1000 };

static encode_tiled_fn resolve(void) {
  static encode_tiled_fn fn;
  if (fn == NULL) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (lib != NULL) fn = (encode_tiled_fn)dlsym(lib, "cuTensorMapEncodeTiled");
  }
  return fn;
}

/* Whether the driver has cuTensorMapEncodeTiled (CUDA 12.0 or later). */
JNIEXPORT jboolean JNICALL Java_io_distca_server_backend_cuda_TensorMaps_available0(JNIEnv *env, jclass cls) {
  (void)env;
  (void)cls;
  return resolve() != NULL ? JNI_TRUE : JNI_FALSE;
}

/*
 * The tensor map of a [rows][heads][head_dim] tensor of element_bytes-byte elements at device
 * address `address`: boxes of box_cols columns x 1 head x box_rows rows, 128-byte swizzle. Writes
 * 128 bytes into `out`; returns the driver's CUresult (0 on success), or RESOLVE_FAILED without a
 * driver.
 */
JNIEXPORT jint JNICALL Java_io_distca_server_backend_cuda_TensorMaps_encode0(JNIEnv *env, jclass cls, jbyteArray out,
                                                                            jlong address, jint data_type,
                                                                            jint element_bytes, jlong rows, jint heads,
                                                                            jint head_dim, jint box_cols, jint box_rows) {
  (void)cls;
  encode_tiled_fn fn = resolve();
  if (fn == NULL) return RESOLVE_FAILED;
  _Alignas(128) uint64_t map[TENSOR_MAP_BYTES / 8];
  memset(map, 0, sizeof map);
  const uint64_t row_bytes = (uint64_t)heads * (uint64_t)head_dim * (uint64_t)element_bytes;
  const uint64_t dims[3] = {(uint64_t)head_dim, (uint64_t)heads, (uint64_t)rows};
  const uint64_t strides[2] = {(uint64_t)head_dim * (uint64_t)element_bytes, row_bytes};
  const uint32_t box[3] = {(uint32_t)box_cols, 1, (uint32_t)box_rows};
  const uint32_t element_strides[3] = {1, 1, 1};
  int rc = fn(map, data_type, 3, (void *)(uintptr_t)address, dims, strides, box, element_strides, 0, SWIZZLE_128B,
              L2_PROMOTION_128B, 0);
  if (rc == 0) (*env)->SetByteArrayRegion(env, out, 0, TENSOR_MAP_BYTES, (const jbyte *)map);
  return rc;
}
