# The fuzz targets' harness (fuzz/harness.hpp) in the ordinary build: replays the
# committed seed corpora (fuzz/corpus/) and the inputs fuzzers found. The
# libFuzzer binaries themselves are a separate clang build (fuzz/, scripts/fuzz.sh).
reuseformer_test(tests_fuzz_regressions SOURCES test_fuzz_regressions.cpp FLAGS ${FLAGS_native})
target_include_directories(tests_fuzz_regressions PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(tests_fuzz_regressions PRIVATE REUSEFORMER_FUZZ_DIR="${PROJECT_SOURCE_DIR}/fuzz")
