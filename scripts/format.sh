#!/usr/bin/env bash
# Formats the C++ sources with the repository's .clang-format, or checks them (--check).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp' '*.h' |
                     while read -r f; do [[ -f "$f" ]] && echo "$f"; done)
[[ ${#files[@]} -eq 0 ]] && exit 0
if [[ "${1:-}" == "--check" ]]; then
  if ! clang-format --dry-run -Werror "${files[@]}"; then
    echo "format: the files above are not clang-formatted; run scripts/format.sh" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
