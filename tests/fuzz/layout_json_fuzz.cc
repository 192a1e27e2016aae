// Fuzzes the layout JSON reader (planner/io/layout_json.cc). Input: JSON text.
//
// Every refusal is INVALID_ARGUMENT; every accepted layout passes
// Layout::Validate, reads back the same after LayoutToJson and through the
// wire form (LayoutToProto / LayoutFromProto), and is either written for
// SGLang or refused as FAILED_PRECONDITION (slots that are not uniform).
#include <string>

#include "absl/strings/string_view.h"
#include "planner/io/layout_json.h"
#include "planner/layout.h"
#include "tests/fuzz/fuzz_target.h"
#include "wire/layout_proto.h"

namespace craft::fuzz {
namespace {

void CheckAccepted(const planner::Layout& layout) {
  CRAFT_FUZZ_CHECK(layout.Validate().ok()) << layout.Validate();
  const absl::StatusOr<planner::Layout> reread =
      planner::ParseLayoutJson(planner::LayoutToJson(layout, "fuzz"));
  CRAFT_FUZZ_CHECK(reread.ok()) << "LayoutToJson wrote what the reader refuses: "
                                << reread.status();
  CRAFT_FUZZ_CHECK(*reread == layout) << "the layout does not read back the same";
  const absl::StatusOr<planner::Layout> from_wire = LayoutFromProto(LayoutToProto(layout, "1.1"));
  CRAFT_FUZZ_CHECK(from_wire.ok() && *from_wire == layout)
      << "the layout does not survive the wire: " << from_wire.status();
  const absl::StatusOr<std::string> sglang = planner::LayoutToSglangJson(layout);
  CRAFT_FUZZ_CHECK(sglang.ok() == layout.HasUniformSlots() &&
                   (sglang.ok() || absl::IsFailedPrecondition(sglang.status())))
      << sglang.status();
}

}  // namespace

const google::protobuf::Message* InputMessage() { return nullptr; }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<craft::planner::Layout> layout = craft::planner::ParseLayoutJson(text);
  if (layout.ok()) {
    craft::fuzz::CheckAccepted(*layout);
  } else {
    CRAFT_FUZZ_CHECK(absl::IsInvalidArgument(layout.status())) << layout.status();
  }
  return 0;
}
