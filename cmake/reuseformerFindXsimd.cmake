# Finds xsimd >= 8 and repairs Debian 12's package of it: its exported target
# links "xtl" without finding the xtl package, so without xtl-dev every consumer
# fails to link with "cannot find -lxtl". xsimd only needs xtl for
# xtl::xcomplex support, which this library does not use (the target sets no
# compile definition for it), so the dangling link is dropped when xtl is absent.
macro(reuseformer_find_xsimd)
  find_package(xsimd 8 ${ARGN})
  if(TARGET xsimd AND NOT TARGET xtl)
    get_target_property(_reuseformer_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
    if(_reuseformer_xsimd_links STREQUAL "xtl")
      find_package(xtl QUIET)
      if(NOT TARGET xtl)
        set_property(TARGET xsimd PROPERTY INTERFACE_LINK_LIBRARIES "")
      endif()
    endif()
    unset(_reuseformer_xsimd_links)
  endif()
endmacro()
