# The safetensors reader and writer: file-format tests, independent of the SIMD
# build, so they run in the native build only.
reuseformer_test(tests_io SOURCES test_safetensors.cpp FLAGS -march=native)
