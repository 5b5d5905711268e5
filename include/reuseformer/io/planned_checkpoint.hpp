#pragma once
// Rewrites a checkpoint without reuse into one that reuses heads as a reuse
// plan says (analysis/reuse_planner.hpp; docs/semantics.md §Reuse planning):
// a new model directory that io::load_model and reuseformer-encode read as
// they read any other.
//
//   io::write_planned_checkpoint("bert", plan, "bert-reuse");
//
// Per layer l with the plan's order π (position p holds original head π[p])
// and F_l = H - K_l fresh heads, every head-indexed tensor is permuted, which
// leaves the function unchanged, and the reused heads' query/key parts dropped:
//   attention.self.{query,key}.{weight,bias}   row blocks of dh: π[0 … F_l-1]
//   attention.self.value.{weight,bias}          row blocks of dh: π
//   attention.output.dense.weight               column blocks of dh: π
//   attention.self.pairwise_factors             [F_l, dh, dh]: π[0 … F_l-1]
//   attention.self.relative_position_embeddings [F_l, 2P - 1]: π[0 … F_l-1]
// Everything else (embeddings, LayerNorms, feed-forward, task heads) is copied
// as it is, in its stored dtype (permutation moves bytes; nothing is
// converted). config.json is the original's with `reuse_schedule` set to the
// plan's schedule (TF's reuse_attention / max_reuse_layer_idx removed).
//
// Guarantee: `out` appears complete or not at all. Everything is written to a
// hidden staging directory beside it, which is renamed to `out` at the end
// (refusing to replace anything that appeared there meanwhile) and removed on
// any failure.

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "reuseformer/analysis/reuse_planner.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/io/bert_model.hpp"
#include "reuseformer/io/config_json.hpp"
#include "reuseformer/io/safetensors_reader.hpp"
#include "reuseformer/io/safetensors_writer.hpp"

namespace reuseformer::detail {

// Throws reuseformer::error when something exists at `target` (an output
// directory the caller is about to create).
inline void require_new_path(const std::filesystem::path& target) {
  require(!std::filesystem::exists(target), target.string(),
          ": expected a path that does not exist (the output directory is created), found an existing ",
          std::filesystem::is_directory(target) ? "directory" : "file");
}

// A new directory beside `target`, removed with its contents unless commit()
// renamed it to `target`.
class staging_directory {
 public:
  explicit staging_directory(const std::filesystem::path& target) : target_(target) {
    require_new_path(target_);
    for (int attempt = 0; path_.empty(); ++attempt) {
      const std::filesystem::path candidate =
          target_.parent_path() / concat(".", target_.filename().string(), ".tmp-", ::getpid(), "-", attempt);
      std::error_code ec;
      if (std::filesystem::create_directory(candidate, ec))
        path_ = candidate;
      else if (ec || attempt == 100)
        throw error(concat(target_.string(), ": cannot create a staging directory beside it: ",
                           ec ? ec.message() : "every name is taken"));
    }
  }
  staging_directory(const staging_directory&) = delete;
  staging_directory& operator=(const staging_directory&) = delete;
  ~staging_directory() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  void commit() {
    if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, target_.c_str(), RENAME_NOREPLACE) != 0)
      throw error(concat(target_.string(), ": cannot rename the staging directory to it: ", std::strerror(errno)));
    path_.clear();
  }

 private:
  std::filesystem::path target_, path_;
};

// The input as `outer` slices of `blocks` blocks of `block` bytes each; the
// output holds, slice after slice, the blocks order[0 … keep-1] of each.
inline std::vector<std::byte> permute_blocks(std::span<const std::byte> in, std::size_t outer, std::size_t blocks,
                                             std::size_t block, const std::vector<index_t>& order, index_t keep) {
  std::vector<std::byte> out;
  out.reserve(outer * static_cast<std::size_t>(keep) * block);
  for (std::size_t o = 0; o < outer; ++o)
    for (index_t p = 0; p < keep; ++p) {
      const std::byte* from =
          in.data() + (o * blocks + static_cast<std::size_t>(order[static_cast<std::size_t>(p)])) * block;
      out.insert(out.end(), from, from + block);
    }
  return out;
}

}  // namespace reuseformer::detail

namespace reuseformer::io {

// Throws reuseformer::error, naming `source`, when the model of `c` already
// reuses heads: a plan permutes the heads of a model without reuse.
inline void require_plannable(const encoder_config& c, std::string_view source) {
  for (std::size_t l = 0; l < c.reuse_schedule.size(); ++l)
    detail::require(c.reuse_schedule[l] == 0, source, ": expected a model without reuse to plan, found ",
                    c.reuse_schedule[l], " reused heads in layer ", l);
}

// Writes the checkpoint in `model_dir` (config.json and model.safetensors of a
// model without reuse) rewritten by `plan` to the new directory `out`.
// `before_commit(staging)` runs once both files are in the staging directory
// (to add files, or to load and check the model there) before it becomes
// `out`. Throws reuseformer::error, leaving no `out`, when `out` exists, the
// model already reuses heads, the plan does not fit it (layers, heads) or
// breaks the prefix rule, a tensor has an unexpected shape, or anything cannot
// be read or written.
inline void write_planned_checkpoint(const std::filesystem::path& model_dir, const analysis::reuse_plan& plan,
                                     const std::filesystem::path& out,
                                     const std::function<void(const std::filesystem::path&)>& before_commit = {}) {
  const std::filesystem::path target = out.filename().empty() ? out.parent_path() : out;
  detail::staging_directory staging(target);
  const std::string config_path = (model_dir / "config.json").string();
  const model_config config = read_config_json(config_path);
  const encoder_config& c = config.encoder;
  require_plannable(c, config_path);
  detail::require(plan.layers() == c.num_hidden_layers && plan.heads == c.num_attention_heads, "reuse plan: expected ",
                  c.num_hidden_layers, " layers of ", c.num_attention_heads, " heads (", config_path, "), found ",
                  plan.layers(), " layers of ", plan.heads, " heads");
  analysis::check_plan(plan);

  const safetensors_reader file(model_dir / "model.safetensors");
  const std::string root = checkpoint_root(file);
  const index_t h = c.num_attention_heads, dh = c.head_dim(), d = c.hidden_size;
  std::deque<std::vector<std::byte>> owned;
  std::vector<tensor_entry> entries;
  for (const std::string& name : file.names()) {
    const tensor_info& info = file.find(name);
    tensor_entry entry{name, info.type, info.shape, info.bytes};
    const std::string layers = root + "encoder.layer.";
    if (name.starts_with(layers)) {
      const std::string rest = name.substr(layers.size());
      const std::size_t dot = rest.find('.');
      index_t l = -1;
      const auto parsed = std::from_chars(rest.data(), rest.data() + std::min(dot, rest.size()), l);
      const std::string part = dot == std::string::npos ? "" : rest.substr(dot + 1);
      detail::require(parsed.ec == std::errc{} && l >= 0 && l < c.num_hidden_layers, file.source(), ": tensor '", name,
                      "': expected a layer below ", c.num_hidden_layers);
      const auto& order = plan.order[static_cast<std::size_t>(l)];
      const index_t fresh = plan.fresh(l);
      const std::size_t element = size_in_bytes(info.type);
      const auto require_shape = [&](const std::vector<index_t>& expected) {
        detail::require(info.shape == expected, file.source(), ": tensor '", name, "': expected shape ",
                        detail::format_extents(expected), ", found ", detail::format_extents(info.shape));
      };
      const auto rows = [&](std::vector<index_t> shape, index_t keep, std::size_t block_elements) {
        require_shape(shape);
        owned.push_back(
            detail::permute_blocks(info.bytes, 1, static_cast<std::size_t>(h), block_elements * element, order, keep));
        shape[0] = shape[0] / h * keep;
        entry.shape = shape;
      };
      const bool query_key = part.starts_with("attention.self.query.") || part.starts_with("attention.self.key.");
      const bool value = part.starts_with("attention.self.value.");
      if (query_key || value) {
        const index_t keep = value ? h : fresh;
        if (part.ends_with(".weight"))
          rows({h * dh, d}, keep, static_cast<std::size_t>(dh * d));
        else
          rows({h * dh}, keep, static_cast<std::size_t>(dh));
      } else if (part == "attention.self.pairwise_factors") {
        rows({h, dh, dh}, fresh, static_cast<std::size_t>(dh * dh));
      } else if (part == "attention.self.relative_position_embeddings") {
        const index_t span = info.shape.size() == 2 ? info.shape[1] : 0;
        rows({h, span}, fresh, static_cast<std::size_t>(span));
      } else if (part == "attention.output.dense.weight") {
        require_shape({d, h * dh});
        owned.push_back(detail::permute_blocks(info.bytes, static_cast<std::size_t>(d), static_cast<std::size_t>(h),
                                               static_cast<std::size_t>(dh) * element, order, h));
      } else {
        entries.push_back(entry);
        continue;
      }
      if (fresh == 0 && !value && part != "attention.output.dense.weight") continue;  // no query/key left
      entry.bytes = owned.back();
    }
    entries.push_back(entry);
  }
  std::map<std::string, std::string, std::less<>> metadata = file.metadata();
  metadata["producer"] = "reuseformer write_planned_checkpoint";
  write_safetensors(staging.path() / "model.safetensors", entries, metadata);

  std::ifstream in(config_path, std::ios::binary);
  nlohmann::json json = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  json.erase("reuse_attention");
  json.erase("max_reuse_layer_idx");
  json["reuse_schedule"] = plan.schedule;
  const std::filesystem::path config_out = staging.path() / "config.json";
  {
    std::ofstream file_out(config_out, std::ios::binary);
    file_out << json.dump(2) << '\n';
    file_out.close();
    detail::require(file_out.good(), config_out.string(), ": cannot write");
  }
  if (before_commit) before_commit(staging.path());
  staging.commit();
}

}  // namespace reuseformer::io
