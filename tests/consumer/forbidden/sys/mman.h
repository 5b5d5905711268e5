// Shadows the real <sys/mman.h> for the layers-only consumer. The layers may
// advise the kernel about their own buffers (huge pages, core/workspace.hpp)
// but must not map files: that belongs to reuseformer/io.hpp, whose POSIX
// dependencies a user of the layers alone need not have. A layer header that
// calls mmap fails to compile here.
#include_next <sys/mman.h>
#pragma GCC poison mmap mmap64 munmap
