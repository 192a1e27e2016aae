// Rows of cells printed as an aligned text table or as CSV, so every craftctl
// table (eval's algorithms, the incremental frontier) formats one way.
#ifndef CRAFT_TOOLS_CRAFTCTL_TEXT_TABLE_H_
#define CRAFT_TOOLS_CRAFTCTL_TEXT_TABLE_H_

#include <string>
#include <vector>

namespace craft::ctl {

struct Column {
  const char* table_name;
  const char* csv_name;
  int width;  // negative: left-aligned
};

// Aligned columns under the table names; cells wider than a column push the
// rest right rather than being cut.
std::string FormatTextTable(const std::vector<Column>& columns,
                            const std::vector<std::vector<std::string>>& rows);
// A header of CSV names, then one line per row.
std::string FormatCsvTable(const std::vector<Column>& columns,
                           const std::vector<std::vector<std::string>>& rows);

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_TEXT_TABLE_H_
