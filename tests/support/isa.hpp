#pragma once
// What the SIMD build a test program was compiled for needs from the CPU.
namespace reuseformer_test {
struct isa_report {
  bool supported;
  const char* arch_name;          // simd::arch_name<simd::default_arch>()
  const char* requires_features;  // for the skip message
};
// Defined in isa.cpp, which is compiled with the build's -march flags.
isa_report check_isa();
}  // namespace reuseformer_test
