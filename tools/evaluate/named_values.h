// The numbers docs/EVALUATION.md's prose quotes, by name: every balance point,
// saving, throughput cell and timing, plus summaries over cells (ranges,
// counts) so that statements such as "CRAFT matches EPLB at R = 2 to 6" are
// computed, not typed. Written as values.tsv; render_doc.awk substitutes
// "{{name}}" in the template.
#ifndef CRAFT_TOOLS_EVALUATE_NAMED_VALUES_H_
#define CRAFT_TOOLS_EVALUATE_NAMED_VALUES_H_

#include <string>
#include <utility>
#include <vector>

#include "tools/evaluate/report.h"
#include "tools/evaluate/scale.h"

namespace craft::evaluate {

using NamedValueList = std::vector<std::pair<std::string, std::string>>;

// (name, value) pairs in a stable order.
NamedValueList NamedValues(const ScaleConfig& config, const Results& results);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_NAMED_VALUES_H_
