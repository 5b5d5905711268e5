#pragma once
// The POSIX file resources the io readers and writers share: an owned file
// descriptor and a read-only memory mapping of a whole file.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "reuseformer/core/error.hpp"

namespace reuseformer::detail {

// The text of the current errno, e.g. "No such file or directory" (thread-safe,
// unlike std::strerror).
[[nodiscard]] inline std::string errno_text() { return std::generic_category().message(errno); }

// Closes the descriptor it owns when it goes out of scope.
class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }

  [[nodiscard]] int get() const noexcept { return fd_; }

  // Closes now and returns whether that succeeded: close() is where NFS and
  // some other file systems report a write that failed late.
  [[nodiscard]] bool close() noexcept { return ::close(std::exchange(fd_, -1)) == 0; }

 private:
  int fd_;
};

}  // namespace reuseformer::detail

namespace reuseformer::io {

// A whole regular file mapped read-only (PROT_READ, MAP_PRIVATE). Unmapped on
// destruction; movable, not copyable. The descriptor is closed right after
// mapping: the mapping keeps the file's pages reachable on its own.
//
// Precondition: nobody truncates the file while it is mapped (touching a page
// past the new end raises SIGBUS). An empty file maps to an empty span, as
// mmap() refuses zero-length mappings.
class mapped_file {
 public:
  mapped_file() = default;

  // Throws reuseformer::error "<path>: cannot open: <reason>" when the file
  // cannot be opened, is not a regular file, or cannot be mapped.
  explicit mapped_file(const std::filesystem::path& path) {
    const auto fail = [&](const std::string& reason) {
      throw error(detail::concat(path.string(), ": cannot open: ", reason));
    };
    const detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) fail(detail::errno_text());
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) fail(detail::errno_text());
    if (!S_ISREG(status.st_mode)) fail("not a regular file");
    if (status.st_size == 0) return;
    void* address = ::mmap(nullptr, static_cast<std::size_t>(status.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (address == MAP_FAILED) fail(detail::errno_text());
    data_ = address;
    size_ = static_cast<std::size_t>(status.st_size);
  }

  mapped_file(mapped_file&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  mapped_file& operator=(mapped_file&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept {
    return {static_cast<const std::byte*>(data_), size_};
  }

  // Drops the pages read so far from this process's memory (MADV_DONTNEED):
  // the mapping is read-only and unmodified, so a later read faults the same
  // bytes back in from the file. For a model that has copied what it needs.
  void release_pages() const noexcept {
    if (data_ != nullptr) ::madvise(data_, size_, MADV_DONTNEED);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace reuseformer::io
