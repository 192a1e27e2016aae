#include "gpu_worker/layout_state.h"

#include <utility>

namespace craft::gpu_worker {

LayoutState LayoutState::Of(planner::Layout layout, std::string version, int gpu) {
  LayoutState state;
  state.local = std::make_shared<const LocalLayout>(LocalLayout::Of(layout, version, gpu));
  state.routing = std::make_shared<const RoutingTable>(layout);
  state.layout = std::make_shared<const planner::Layout>(std::move(layout));
  state.version = std::move(version);
  return state;
}

}  // namespace craft::gpu_worker
