// Fuzzes the agent's checks and batching of its workers' load windows: worker
// hellos (WorkerRegistry::Attach), the window checks NodeState makes before
// batching (ValidateWindowContent, WorkerRegistry::CheckWindowId) and the
// WindowBatcher. Input: a serialized craft.fuzz.WindowSession.
//
// Checks that batching loses and duplicates nothing: every window accepted
// comes out in exactly one NodeLoad, with the windows of one id together, and
// no more batches wait than the bound.
#include <algorithm>
#include <map>
#include <utility>

#include "agent/window_batcher.h"
#include "agent/worker_registry.h"
#include "tests/fuzz/fuzz_session.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace craft::fuzz {
namespace {

constexpr int kMaxSteps = 400;
constexpr size_t kMaxOpen = 8;
constexpr int64_t kMaxAdvanceMs = 3'600'000;

// Attached workers' streams; never called.
class NullChannel final : public agent::WorkerChannel {
 public:
  void Send(const craft::v1::WorkerCommand&) override {}
  void Close(const absl::Status&) override {}
};

class Windows {
 public:
  void Run(const WindowSession& session) {
    if (session.has_model()) registry_.SetModel(session.model());
    const int steps = std::min(session.steps_size(), kMaxSteps);
    for (int i = 0; i < steps; ++i) Step(session.steps(i));
    Collect(batcher_.TakeDue(absl::InfiniteFuture()));
    CRAFT_FUZZ_CHECK(batcher_.open_batches() == 0) << batcher_.open_batches() << " batches left";
    for (const auto& [key, count] : pending_) {
      CRAFT_FUZZ_CHECK(count == 0)
          << "window " << key.second << " of GPU " << key.first << " came out "
          << (count > 0 ? "fewer" : "more") << " times than it went in";
    }
  }

 private:
  void Step(const WindowStep& step) {
    switch (step.step_case()) {
      case WindowStep::kAttach:
        registry_.Attach(step.attach(), &channel_).IgnoreError();
        return;
      case WindowStep::kDetach:
        registry_.Detach(step.detach(), &channel_);
        return;
      case WindowStep::kAdvanceMs:
        now_ += absl::Milliseconds(std::clamp<int64_t>(step.advance_ms(), 0, kMaxAdvanceMs));
        Collect(batcher_.TakeDue(now_));
        return;
      case WindowStep::kWindow:
        Add(step.window());
        return;
      case WindowStep::STEP_NOT_SET:
        return;
    }
  }

  // As NodeState::OnWorkerWindow: only windows of attached GPUs that pass the
  // checks are batched.
  void Add(const craft::v1::GpuWindow& window) {
    const int gpu = window.gpu();
    if (registry_.channel(gpu) == nullptr) return;
    const std::optional<craft::v1::ModelShape>& model = registry_.model();
    if (!agent::ValidateWindowContent(window, model ? model->num_layers() : 0).ok()) return;
    if (!registry_.CheckWindowId(gpu, window).ok()) return;
    // Once per attachment: a worker that attaches again starts its ids anew.
    ++pending_[{gpu, window.window_id()}];
    Collect(batcher_.Add(window, now_, registry_.AttachedGpus()));
    CRAFT_FUZZ_CHECK(batcher_.open_batches() <= kMaxOpen)
        << batcher_.open_batches() << " batches open, at most " << kMaxOpen;
  }

  void Collect(const std::vector<craft::v1::NodeLoad>& loads) {
    for (const craft::v1::NodeLoad& load : loads) {
      CRAFT_FUZZ_CHECK(load.gpus_size() > 0) << "an empty NodeLoad";
      for (const craft::v1::GpuWindow& window : load.gpus()) {
        CRAFT_FUZZ_CHECK(window.window_id() == load.gpus(0).window_id())
            << "one NodeLoad holds windows " << load.gpus(0).window_id() << " and "
            << window.window_id();
        --pending_[{window.gpu(), window.window_id()}];
      }
    }
  }

  agent::WorkerRegistry registry_{{0, 1, 2, 3}};
  agent::WindowBatcher batcher_{absl::Milliseconds(200), kMaxOpen};
  NullChannel channel_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  std::map<std::pair<int, int64_t>, int> pending_;  // (gpu, window id): added - taken
};

}  // namespace

const google::protobuf::Message* InputMessage() { return &WindowSession::default_instance(); }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  craft::fuzz::WindowSession session;
  if (!session.ParseFromArray(data, static_cast<int>(size))) return 0;
  craft::fuzz::Windows windows;
  windows.Run(session);
  return 0;
}
