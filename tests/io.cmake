# The safetensors reader and writer: file-format tests, independent of the SIMD
# build, so they run in the native build only.
reuseformer_test(tests_io SOURCES test_safetensors.cpp FLAGS ${FLAGS_native})

# Loading checkpoints: config.json, binding by tensor name, parity through the C++ API.
reuseformer_test(tests_checkpoint SOURCES test_checkpoint.cpp FLAGS ${FLAGS_native})

# The reuseformer-encode tool, run as a program (registered in its own file).
include(${CMAKE_CURRENT_LIST_DIR}/tool.cmake)
