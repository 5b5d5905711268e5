# The reuseformer-encode tool, run as a program by tests_tool. The tools are
# built with the examples (REUSEFORMER_BUILD_EXAMPLES); without them there is
# nothing to test.
if(TARGET reuseformer-encode)
  # Compiled with the tool's own flags (no -march of its own): the test checks
  # the tool's report against the library's figures for the same model, and
  # scratch sizes follow the SIMD build.
  reuseformer_test(tests_tool SOURCES test_tool.cpp)
  target_compile_definitions(tests_tool PRIVATE REUSEFORMER_ENCODE="$<TARGET_FILE:reuseformer-encode>")
  # Building the test builds the tool it runs.
  add_dependencies(tests_tool reuseformer-encode)
endif()
