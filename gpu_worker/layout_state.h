// A layout version a worker can route with: the whole layout (routing needs
// every GPU's slots), its routing table and this GPU's part.
//
//   LayoutState state = LayoutState::Of(std::move(layout), "3.7", /*gpu=*/2);
//   traffic.CountWindow(window_id, *state.routing, *state.local, counter);
//
// Thread-safety: a value whose parts are immutable and shared, so copies are
// cheap and may be read from any thread.
#ifndef CRAFT_GPU_WORKER_LAYOUT_STATE_H_
#define CRAFT_GPU_WORKER_LAYOUT_STATE_H_

#include <memory>
#include <string>

#include "gpu_worker/local_layout.h"
#include "gpu_worker/routing.h"
#include "planner/layout.h"

namespace craft::gpu_worker {

struct LayoutState {
  std::string version;
  std::shared_ptr<const planner::Layout> layout;
  std::shared_ptr<const RoutingTable> routing;
  std::shared_ptr<const LocalLayout> local;

  // `layout` must be valid (Layout::Validate) and hold GPU `gpu`.
  static LayoutState Of(planner::Layout layout, std::string version, int gpu);
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_LAYOUT_STATE_H_
