# Reliability tests (included from tests/CMakeLists.txt): thread safety,
# numerics at the extremes, long sequences. They do not depend on the
# instruction set, so they run in the native build only.
find_package(Threads REQUIRED)

# One built model called from several std::threads, each with its own
# workspace; meaningful under -fsanitize=thread (configure with
# -DREUSEFORMER_OPENMP=OFF, as ThreadSanitizer does not see OpenMP's barriers).
reuseformer_test(tests_concurrency SOURCES test_concurrency.cpp FLAGS ${FLAGS_native})
target_link_libraries(tests_concurrency PRIVATE Threads::Threads)

# Extreme logits, fully masked rows and sequences, NaN/Inf containment.
reuseformer_test(tests_numerics SOURCES test_numerics.cpp FLAGS ${FLAGS_native})

# 8192 tokens: workspace size, no heap allocation, finite outputs, spot checks.
# The counting operator new is shared with tests_allocation and the tool.
reuseformer_test(tests_long_sequence SOURCES test_long_sequence.cpp FLAGS ${FLAGS_native})
target_include_directories(tests_long_sequence PRIVATE ${PROJECT_SOURCE_DIR})
