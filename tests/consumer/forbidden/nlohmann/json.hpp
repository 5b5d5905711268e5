// Shadows the real <nlohmann/json.hpp> for the layers-only consumer: a layer header that
// includes it fails to compile, as it would for a user without the io dependencies.
#error "reuseformer's layers must not include <nlohmann/json.hpp> (it belongs to reuseformer/io.hpp)"
