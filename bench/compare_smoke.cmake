# Smoke run of the comparison harness on a tiny shape (CI proves it builds, runs,
# exports a model the peers can read, and writes its JSON and plot script), and
# of its checks of the peers' rows (a bad peers JSON makes run exit 1).
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

# The peers' rows are checked as ours are: a peers JSON (as peers.py writes it)
# with an int8 peer out of the int8 tolerance, then with a precision the table
# has no rows of, each makes run exit 1 naming the peer and what was wrong.
set(peer "\"onnxruntime-int8\": {\"version\": \"smoke\", \"median_ms\": 1, \"min_ms\": 1, \"max_ms\": 1")
set(checks_int8 "precision\": \"int8\", \"max_abs_diff_vs_reference\": 1000, \"rms_diff_vs_reference\": 100"
    "peer onnxruntime-int8: max \\|output - float64 reference\\| = 1e\\+03, .* above the tolerance .*int8: sqrt\\(4 L\\) k 2\\^-8")
set(checks_unknown "precision\": \"int4\", \"max_abs_diff_vs_reference\": 0"
    "peer onnxruntime-int8: precision: expected fp32, bf16 or int8, found 'int4'")
foreach(case checks_int8 checks_unknown)
  list(GET ${case} 0 fields)
  list(GET ${case} 1 expected)
  file(WRITE "${DIR}/peers/peers_1x4.json" "{\"peers\": {${peer}, \"${fields}}}}")
  execute_process(COMMAND "${COMPARE}" run "${DIR}/peers" --shapes 1x4 --ragged none --layers 1 --threads 2 --repeat 1
                  RESULT_VARIABLE status OUTPUT_QUIET ERROR_VARIABLE errors)
  if(NOT status EQUAL 1 OR NOT errors MATCHES "${expected}")
    message(FATAL_ERROR "reuseformer_compare run with ${DIR}/peers/peers_1x4.json: expected exit 1 and '${expected}', "
                        "found ${status} and: ${errors}")
  endif()
endforeach()
