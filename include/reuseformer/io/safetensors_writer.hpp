#pragma once
// Writing safetensors files (the format is described in safetensors_reader.hpp).
//
// Layout: tensors are stored by decreasing element size, then by name, with no
// gaps (the reference reader rejects gaps), and the header is padded with
// spaces to a multiple of 8 bytes. Together these start every tensor at an
// offset that is a multiple of its element size, so a reader that maps the file
// can use every tensor in place.
//
// Guarantee: the target is replaced atomically. The file is written to a new
// temporary file in the target's directory, synced and closed, then renamed
// onto the target; on any failure the temporary file is removed and
// reuseformer::error is thrown, naming the target, so the target path holds
// either its previous content or the complete new file, never a partial one.
// (A process killed mid-write can leave a hidden ".<name>.tmp-…" file behind.)
//
// Preconditions: every tensor's bytes are little-endian (the host's order,
// checked at compile time) and stay valid during the call.
//
//   std::vector<float> w(6);
//   io::write_safetensors("out.safetensors", {io::make_entry("w", w, {2, 3})}, {{"format", "pt"}});

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <ranges>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/io/dtype.hpp"
#include "reuseformer/io/posix_file.hpp"

namespace reuseformer::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian values and the writer copies memory as is");

// One tensor to write: its row-major little-endian bytes, their dtype and shape.
struct tensor_entry {
  std::string name;
  dtype type;
  std::vector<index_t> shape;
  std::span<const std::byte> bytes;
};

// An entry over contiguous values of a type dtype_of knows (float, double,
// bfloat16, int64_t, int32_t, …); the dtype follows from the element type.
template <std::ranges::contiguous_range Values>
[[nodiscard]] tensor_entry make_entry(std::string name, const Values& values, std::vector<index_t> shape) {
  using T = std::ranges::range_value_t<Values>;
  return {std::move(name), dtype_of<T>, std::move(shape),
          std::as_bytes(std::span<const T>(std::ranges::data(values), std::ranges::size(values)))};
}

}  // namespace reuseformer::io

namespace reuseformer::detail {

// A new file beside `target`, removed on destruction unless commit() renamed
// it onto the target.
//
// Not mkstemp(): it creates files with mode 0600, which would survive the
// rename; restoring the usual umask-derived mode would need umask(), which is
// process-wide and racy. open(O_CREAT | O_EXCL, 0666) under a name unique to
// this process and call gets the mode every other file the process creates has.
class temporary_file {
 public:
  explicit temporary_file(const std::filesystem::path& target) : target_(target) {
    static std::atomic<unsigned long> counter{0};
    for (int attempt = 0; fd_ < 0; ++attempt) {
      path_ = target.parent_path() /
              concat(".", target.filename().string(), ".tmp-", ::getpid(), "-", counter.fetch_add(1));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      // EEXIST: a file left by a killed process that had our pid; try the next name.
      if (fd_ < 0 && (errno != EEXIST || attempt == 100))
        fail("cannot create a temporary file beside it: ", errno_text());
    }
  }
  temporary_file(const temporary_file&) = delete;
  temporary_file& operator=(const temporary_file&) = delete;
  ~temporary_file() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  void write(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      const ::ssize_t written = ::write(fd_, bytes.data(), bytes.size());
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) fail("cannot write: ", errno_text());
      bytes = bytes.subspan(static_cast<std::size_t>(written));
    }
  }

  // Syncs (so that a crash after the rename cannot expose an empty or partial
  // file under the target's name), closes, and renames onto the target.
  void commit() {
    if (::fsync(fd_) != 0) fail("cannot write: ", errno_text());
    if (::close(std::exchange(fd_, -1)) != 0) fail("cannot write: ", errno_text());
    if (std::rename(path_.c_str(), target_.c_str()) != 0)
      fail("cannot rename the temporary file onto it: ", errno_text());
    path_.clear();
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    throw error(concat(target_.string(), ": ", parts...));
  }

  std::filesystem::path target_;
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace reuseformer::detail

namespace reuseformer::io {

// Writes `tensors` and `metadata` (stored as "__metadata__" when not empty) to
// `path`, replacing any file there atomically. Throws reuseformer::error
// "<path>: …" before creating any file when a name repeats or is
// "__metadata__", an extent is negative, or a tensor's byte count differs from
// what its dtype and shape need; and when the file cannot be written.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_entry>& tensors,
                              const std::map<std::string, std::string, std::less<>>& metadata = {}) {
  const auto fail = [&](const auto&... parts) { throw error(detail::concat(path.string(), ": ", parts...)); };
  std::set<std::string_view> names;
  for (const tensor_entry& t : tensors) {
    if (t.name == "__metadata__") fail("tensor name '__metadata__' is reserved for the metadata");
    if (!names.insert(t.name).second) fail("tensor '", t.name, "' appears twice");
    if (std::ranges::any_of(t.shape, [](index_t extent) { return extent < 0; }))
      fail("tensor '", t.name, "': shape ", detail::format_extents(t.shape), ": expected extents >= 0");
    if (byte_count(t.type, t.shape) != t.bytes.size())
      fail("tensor '", t.name, "': ", detail::describe_size(t.type, t.shape), ", found ", t.bytes.size());
  }

  std::vector<const tensor_entry*> order;
  for (const tensor_entry& t : tensors) order.push_back(&t);
  std::ranges::sort(order, [](const tensor_entry* a, const tensor_entry* b) {
    const std::size_t size_a = size_in_bytes(a->type), size_b = size_in_bytes(b->type);
    return size_a != size_b ? size_a > size_b : a->name < b->name;
  });

  nlohmann::json header = nlohmann::json::object();
  std::uint64_t offset = 0;
  for (const tensor_entry* t : order) {
    header[t->name] = {
        {"dtype", name(t->type)}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  const std::uint64_t length = text.size();

  detail::temporary_file file(path);
  file.write(std::as_bytes(std::span(&length, 1)));
  file.write(std::as_bytes(std::span(text)));
  for (const tensor_entry* t : order) file.write(t->bytes);
  file.commit();
}

}  // namespace reuseformer::io
