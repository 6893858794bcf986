# Sourced by scripts/sanitize.sh, scripts/fuzz.sh and scripts/test.sh: where the
# sanitizer and fuzz builds keep their Bazel output bases, one per kind and per checkout.
#
#   output_base KIND   prints ${XDG_CACHE_HOME:-~/.cache}/blockserve-KIND-bazel-<8 hex>
#
# The hex is of the checkout's absolute path, as Bazel's own default output base is. One
# output base shared by two checkouts (a clone in another folder, a CI workspace) keeps
# runfiles trees whose links point into the other checkout: when that one is gone, a
# test reads no data files (seen: the fuzz replay tests under ASan found "no input
# files" after the first checkout was deleted).
output_base() {
  local id
  id=$(pwd -P | md5sum | cut -c1-8)
  printf '%s/blockserve-%s-bazel-%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}" "$1" "$id"
}
