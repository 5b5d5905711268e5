# reuseformer_warnings(target): the project's warning policy for its own targets.
# Third-party headers (xsimd, nlohmann_json, Catch2) come in through
# imported targets, so CMake passes them as -isystem and they stay silent.
function(reuseformer_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(REUSEFORMER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
