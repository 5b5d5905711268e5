# Configures, builds and runs tests/consumer in MODE find_package (against an
# install of BUILD_DIR into a scratch prefix) or add_subdirectory (against
# SOURCE_DIR): the layers-only program, then the loader on a checkpoint
# directory made from FIXTURE_DIR's pairwise_reuse fixture. Cross-compiling,
# TOOLCHAIN is the toolchain file and EMULATOR the command that runs the programs.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): command failed (${status}): ${ARGN}")
  endif()
endfunction()

if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  set(extra -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  set(extra -DREUSEFORMER_SOURCE_DIR=${SOURCE_DIR})
endif()
if(TOOLCHAIN)
  list(APPEND extra -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN})
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCONSUME_MODE=${MODE} ${extra})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${EMULATOR} ${WORK_DIR}/build/consumer_layers)
file(MAKE_DIRECTORY ${WORK_DIR}/checkpoint)
file(COPY_FILE ${FIXTURE_DIR}/pairwise_reuse.config.json ${WORK_DIR}/checkpoint/config.json)
file(COPY_FILE ${FIXTURE_DIR}/pairwise_reuse.safetensors ${WORK_DIR}/checkpoint/model.safetensors)
run(${EMULATOR} ${WORK_DIR}/build/consumer_io ${WORK_DIR}/checkpoint)
