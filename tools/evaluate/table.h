// A small table of strings that the evaluation writes three ways: CSV (the
// published data, read by the plots), a Markdown table (pasted into
// docs/EVALUATION.md) and aligned text (printed while the evaluation runs).
#ifndef CRAFT_TOOLS_EVALUATE_TABLE_H_
#define CRAFT_TOOLS_EVALUATE_TABLE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace craft::evaluate {

class Table {
 public:
  explicit Table(std::vector<std::string> columns);

  // Appends a row. Rows must have one cell per column and cells no commas or
  // newlines (the CSV is read with a plain comma split); a violation is a
  // programming error and aborts.
  void AddRow(std::vector<std::string> cells);

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<std::vector<std::string>>& rows() const { return rows_; }

  std::string ToCsv() const;
  std::string ToMarkdown() const;
  std::string ToText() const;

 private:
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// "%.*f" of `value`.
std::string Fixed(double value, int digits);

// Writes `text` to `dir`/`name`, replacing the file.
absl::Status WriteText(const std::string& dir, const std::string& name, const std::string& text);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_TABLE_H_
