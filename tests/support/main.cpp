// Test runner: skips (exit 77) a SIMD build the CPU cannot execute, instead of
// dying on an illegal instruction.
#if REUSEFORMER_CATCH2_V3
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cstdio>

#include "support/isa.hpp"

int main(int argc, char** argv) {
  const reuseformer_test::isa_report isa = reuseformer_test::check_isa();
  if (!isa.supported) {
    std::printf("SKIPPED: this CPU lacks %s, required by the '%s' build\n", isa.requires_features, isa.arch_name);
    return 77;
  }
  std::printf("SIMD build: %s (requires %s)\n", isa.arch_name, isa.requires_features);
  return Catch::Session().run(argc, argv);
}
