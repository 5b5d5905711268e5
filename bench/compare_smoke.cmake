# Smoke run of the comparison harness on a tiny shape (CI proves it builds, runs,
# exports a model the peers can read, and writes its JSON and plot script).
# Asserts nothing about timing. Usage: cmake -DCOMPARE=exe -DDIR=dir -P compare_smoke.cmake
file(REMOVE_RECURSE "${DIR}")
foreach(mode export run)
  execute_process(COMMAND "${COMPARE}" ${mode} "${DIR}" --shapes 2x16 --ragged 2x4-16 --layers 2 --threads 2 --repeat 1
                  RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "reuseformer_compare ${mode} failed with ${status}")
  endif()
endforeach()
foreach(file model/config.json model/model.safetensors input_2x16.safetensors output_2x16.safetensors
             input_2x4-16.safetensors output_2x4-16.safetensors results.json plot.gp)
  if(NOT EXISTS "${DIR}/${file}")
    message(FATAL_ERROR "reuseformer_compare did not write ${DIR}/${file}")
  endif()
endforeach()
file(READ "${DIR}/results.json" results)
string(JSON variants LENGTH "${results}" shapes 0 variants)
if(NOT variants EQUAL 25)
  message(FATAL_ERROR "results.json: expected 25 variants (9 float, 8 bf16, 8 int8), found ${variants}")
endif()
string(JSON ragged_variants LENGTH "${results}" ragged 0 variants)
if(NOT ragged_variants EQUAL 7)
  message(FATAL_ERROR "results.json: expected 7 ragged-batch variants, found ${ragged_variants}")
endif()
