// Shadows the real <sys/mman.h> for the layers-only consumer: a layer header that
// includes it fails to compile, as it would for a user without the io dependencies.
#error "reuseformer's layers must not include <sys/mman.h> (it belongs to reuseformer/io.hpp)"
