# Renders docs/EVALUATION.md from tools/evaluate/EVALUATION.md.in:
#   a line "{{include:FILE}}" becomes the contents of DATA/FILE (a table or
#   figure list craft-evaluate wrote), and
#   "{{KEY}}" anywhere becomes KEY's value in DATA/values.tsv, or the
#   variable given with -v (script_seconds).
# Unknown keys render as "n/a" and missing files as a note; both are reported
# on stderr, so a run without the recorded traces still yields a document.
#
#   awk -v data=docs/evaluation -v script_seconds=150 -f render_doc.awk TEMPLATE
BEGIN {
  values = data "/values.tsv"
  while ((getline line < values) > 0) {
    tab = index(line, "\t")
    value[substr(line, 1, tab - 1)] = substr(line, tab + 1)
  }
  close(values)
  if (script_seconds != "") value["script_seconds"] = script_seconds
}

/^[{][{]include:[^}]+[}][}]$/ {
  path = data "/" substr($0, 11, length($0) - 12)
  lines = 0
  while ((getline line < path) > 0) {
    print line
    lines++
  }
  close(path)
  if (lines == 0) {
    print "*(not generated in this run)*"
    print "render_doc: nothing in " path > "/dev/stderr"
  }
  next
}

{
  out = ""
  rest = $0
  while (match(rest, /[{][{][A-Za-z0-9_.-]+[}][}]/)) {
    key = substr(rest, RSTART + 2, RLENGTH - 4)
    if (key in value) {
      text = value[key]
    } else {
      text = "n/a"
      print "render_doc: no value for " key > "/dev/stderr"
    }
    out = out substr(rest, 1, RSTART - 1) text
    rest = substr(rest, RSTART + RLENGTH)
  }
  print out rest
}
