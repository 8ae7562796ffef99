# Sourced by the scripts that generate a block of README.md (config_reference.sh,
# demo_table.sh): the one rule for replacing or checking the text between a
# block's begin and end marker lines. The caller defines `generate`, which
# prints the block's text.
#
#   readme_block --update|--check README BEGIN_MARKER END_MARKER WHAT SOURCE SCRIPT
# WHAT names the block in messages ("The config reference"), SOURCE what it is
# generated from ("schema"), SCRIPT the command that updates it.
readme_block() {
  local mode="$1" readme="$2" begin="$3" end="$4" what="$5" source="$6" script="$7"
  grep -qF -- "$begin" "$readme" && grep -qF -- "$end" "$readme" ||
    { echo "$readme has no markers for $what: '$begin' ... '$end'" >&2; return 1; }
  # The block first: a generator that fails leaves the README as it was.
  local block
  block="$(generate)" || { echo "$what: generating the block failed" >&2; return 1; }
  # A marker is matched as a whole line, literally.
  local begin_pattern end_pattern expected
  begin_pattern="$(printf '%s' "$begin" | sed 's/[][\/.*^$]/\\&/g')"
  end_pattern="$(printf '%s' "$end" | sed 's/[][\/.*^$]/\\&/g')"
  expected="$(mktemp)"
  {
    sed -n "1,/^$begin_pattern\$/p" "$readme"
    printf '%s\n' "$block"
    sed -n "/^$end_pattern\$/,\$p" "$readme"
  } >"$expected"
  local status=0
  if [[ "$mode" == --update ]]; then
    cp "$expected" "$readme"
  elif ! diff -u "$readme" "$expected" >&2; then
    echo "$what in $readme differs from the $source (diff above, - README, + $source)." >&2
    echo "Run: $script --update $readme" >&2
    status=1
  fi
  rm -f "$expected"
  return "$status"
}
