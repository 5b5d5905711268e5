// Compiled with each SIMD build's flags, so the predefined ISA macros describe
// the instructions the rest of the program may use.
#include "support/isa.hpp"

#include <reuseformer/simd/arch.hpp>

namespace reuseformer_test {

isa_report check_isa() {
  const char* name = reuseformer::simd::arch_name<reuseformer::simd::default_arch>();
#if defined(__x86_64__) && defined(__AVX512F__)
  __builtin_cpu_init();
  bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512cd");
  // The extensions a kernel of the library uses when the build enables them:
  // vdpbf16ps in the bf16 products (gemm/bf16_micro_kernel.hpp), vpdpbusd in
  // the int8 products.
#if defined(__AVX512BF16__)
  supported = supported && __builtin_cpu_supports("avx512bf16");
#define REUSEFORMER_TEST_BF16 ", BF16"
#else
#define REUSEFORMER_TEST_BF16 ""
#endif
#if defined(__AVX512VNNI__)
  supported = supported && __builtin_cpu_supports("avx512vnni");
#define REUSEFORMER_TEST_VNNI ", VNNI"
#else
#define REUSEFORMER_TEST_VNNI ""
#endif
  return {supported, name, "AVX-512 F/BW/DQ/VL/CD (x86-64-v4)" REUSEFORMER_TEST_BF16 REUSEFORMER_TEST_VNNI};
#elif defined(__x86_64__) && defined(__AVX2__)
  __builtin_cpu_init();
  return {__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"), name,
          "AVX2, FMA, BMI2 (x86-64-v3)"};
#elif defined(__aarch64__)
  return {true, name, "the AArch64 base instruction set (armv8-a, NEON included)"};
#else
  return {true, name, "the baseline instruction set"};
#endif
}

}  // namespace reuseformer_test
