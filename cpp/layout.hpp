// A network's shape, checked once for both backends (Network, and the CUDA backend's
// DeviceNetwork): what the layer sizes and activations must satisfy, and where each layer's
// parameters sit in the one flat buffer (W0 b0 W1 b1 ..., W_l of shape (n_in, n_out)).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "common.hpp"
#include "losses.hpp"

namespace fastbp {

struct Layout {
  std::vector<Act> acts;           // one per weight layer: the hidden ones, then the output's
  std::vector<std::size_t> w_off;  // offset of W_l; b_l follows it
  std::size_t n_params = 0;
};

// sizes: [n_in, hidden..., n_out], each positive (Python checks them against the int range);
// hidden: one activation per hidden layer, each one a hidden layer may have; out: an output
// activation that suits the loss; at most max_params parameters in all. Throws
// std::invalid_argument saying which rule is broken.
inline Layout check_layout(const std::vector<int>& sizes, const std::vector<Act>& hidden, Act out,
                           Loss loss, std::size_t max_params) {
  require(sizes.size() >= 2, "layer_sizes needs at least 2 entries (inputs and outputs)");
  for (int s : sizes) require(s > 0, "layer_sizes entries must be positive");
  require(hidden.size() == sizes.size() - 2, "one hidden activation per hidden layer is needed");
  for (Act a : hidden)
    require(activation_hidden(a),
            std::string(activation_name(a)) + " is only an output activation");
  const std::string mismatch = loss_output_mismatch(loss, out);
  require(mismatch.empty(), mismatch);
  Layout layout;
  layout.acts = hidden;
  layout.acts.push_back(out);
  std::size_t total = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    layout.w_off.push_back(total);
    // Below 2^31 each, (in + 1) * out < 2^62: no overflow before the check.
    const std::size_t layer = (std::size_t(sizes[l]) + 1) * std::size_t(sizes[l + 1]);
    require(layer <= max_params - total,
            "the network has more parameters than one buffer can hold (" +
                std::to_string(max_params) + " at most)");
    total += layer;
  }
  layout.n_params = total;
  return layout;
}

}  // namespace fastbp
