#include "tools/evaluate/table.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tools/craftctl/files.h"

namespace craft::evaluate {
namespace {

void CheckCells(const std::vector<std::string>& cells, size_t expected) {
  if (cells.size() != expected) {
    std::fprintf(stderr, "Table: row of %zu cells for %zu columns\n", cells.size(), expected);
    std::abort();
  }
  for (const std::string& cell : cells) {
    if (cell.find_first_of(",\n") != std::string::npos) {
      std::fprintf(stderr, "Table: cell '%s' has a comma or newline\n", cell.c_str());
      std::abort();
    }
  }
}

}  // namespace

Table::Table(std::vector<std::string> columns) : columns_(std::move(columns)) {
  CheckCells(columns_, columns_.size());
}

void Table::AddRow(std::vector<std::string> cells) {
  CheckCells(cells, columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::ToCsv() const {
  std::string out = absl::StrJoin(columns_, ",") + "\n";
  for (const auto& row : rows_) out += absl::StrJoin(row, ",") + "\n";
  return out;
}

std::string Table::ToMarkdown() const {
  std::string out = "| " + absl::StrJoin(columns_, " | ") + " |\n|";
  for (size_t c = 0; c < columns_.size(); ++c) out += c == 0 ? " --- |" : " ---: |";
  out += "\n";
  for (const auto& row : rows_) out += "| " + absl::StrJoin(row, " | ") + " |\n";
  return out;
}

std::string Table::ToText() const {
  std::vector<size_t> widths;
  for (const std::string& column : columns_) widths.push_back(column.size());
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      // The first column (a name) is left-aligned, numbers right-aligned.
      out += absl::StrFormat(c == 0 ? "%-*s" : "%*s", static_cast<int>(widths[c]), cells[c]);
      out += c + 1 < cells.size() ? "  " : "\n";
    }
    return out;
  };
  std::string out = line(columns_);
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::string Fixed(double value, int digits) { return absl::StrFormat("%.*f", digits, value); }

absl::Status WriteText(const std::string& dir, const std::string& name, const std::string& text) {
  return ctl::WriteFile((std::filesystem::path(dir) / name).string(), text);
}

}  // namespace craft::evaluate
