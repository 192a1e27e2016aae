#include "tools/craftctl/text_table.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace craft::ctl {

std::string FormatTextTable(const std::vector<Column>& columns,
                            const std::vector<std::vector<std::string>>& rows) {
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      const int width = columns[c].width;
      out += absl::StrFormat(width < 0 ? "%-*s" : "%*s", width < 0 ? -width : width, cells[c]);
      out += c + 1 < cells.size() ? " " : "\n";
    }
    return out;
  };
  std::vector<std::string> header;
  for (const Column& column : columns) header.push_back(column.table_name);
  std::string out = line(header);
  for (const std::vector<std::string>& row : rows) out += line(row);
  return out;
}

std::string FormatCsvTable(const std::vector<Column>& columns,
                           const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::string> header;
  for (const Column& column : columns) header.push_back(column.csv_name);
  std::string out = absl::StrJoin(header, ",") + "\n";
  for (const std::vector<std::string>& row : rows) out += absl::StrJoin(row, ",") + "\n";
  return out;
}

}  // namespace craft::ctl
