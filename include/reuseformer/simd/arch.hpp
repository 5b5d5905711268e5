#pragma once
// The compile-time SIMD architecture choice; this is the only place it is made.
//
// Every kernel is a template on an architecture tag `Arch`:
// - an xsimd architecture (xsimd::sse2, xsimd::fma3<xsimd::avx2>, xsimd::avx512bw, ...)
//   selects the vector path built on xsimd::batch<T, Arch>;
// - simd::scalar selects the scalar reference path.
// simd::default_arch is what layers use unless the user names another:
//   -DREUSEFORMER_ARCH=xsimd::avx2   a specific xsimd architecture,
//   -DREUSEFORMER_NO_SIMD            the scalar path everywhere,
//   otherwise                        xsimd::default_arch, the best ISA the compiler
//                                    flags (-march=...) enable.

#include <type_traits>

// GCC 12 reports a false -Wmaybe-uninitialized inside its own avx512fintrin.h
// (the `__Y = __Y` of _mm512_undefined_ps) wherever xsimd's AVX-512 kernels are
// inlined (GCC bug 105593, fixed in GCC 13). The diagnostic takes the pragma
// state of the intrinsics header's own lines, so the suppression must surround
// their first inclusion, which is here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace reuseformer::simd {

// Tag for the scalar reference path.
struct scalar {};

#if defined(REUSEFORMER_ARCH)
using default_arch = REUSEFORMER_ARCH;
#elif defined(REUSEFORMER_NO_SIMD)
using default_arch = scalar;
#else
using default_arch = xsimd::default_arch;
#endif

template <class Arch>
inline constexpr bool is_vector_arch = !std::is_same_v<Arch, scalar>;

// Whether products on bfloat16 operands (gemm/bf16_micro_kernel.hpp) run on
// the AVX512-BF16 dot-product instruction (vdpbf16ps) under Arch: the compiler
// flags enable it (-march=znver4 and later, sapphirerapids, cooperlake, or
// -mavx512bf16) and Arch is a 512-bit architecture. Elsewhere the same bf16
// operands are widened to float inside the kernel (exact) and multiplied by
// fused multiply-adds.
template <class Arch>
[[nodiscard]] consteval bool has_bf16_dot() {
#if defined(__AVX512BF16__)
  if constexpr (is_vector_arch<Arch>) return sizeof(xsimd::batch<float, Arch>) == 64;
#endif
  return false;
}

// Whether products on 8-bit operands (gemm/int8_micro_kernel.hpp) run on the
// AVX512-VNNI dot-product instruction (vpdpbusd) under Arch: the compiler
// flags enable it (-march=icelake-server, znver4 and later, or -mavx512vnni)
// and Arch is a 512-bit architecture. Elsewhere the same 8-bit operands are
// multiplied and summed in 32-bit integers by portable code, to the same
// exact sums.
template <class Arch>
[[nodiscard]] consteval bool has_int8_dot() {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  if constexpr (is_vector_arch<Arch>) return sizeof(xsimd::batch<float, Arch>) == 64;
#endif
  return false;
}

// Human-readable name of an architecture tag, for benchmark and test output.
template <class Arch>
[[nodiscard]] constexpr const char* arch_name() {
  if constexpr (is_vector_arch<Arch>)
    return Arch::name();
  else
    return "scalar";
}

}  // namespace reuseformer::simd
