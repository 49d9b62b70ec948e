#!/bin/sh
# Fetches axe-core's minified build from the npm registry into this folder
# (the browser tests inject it into the app's pages; it is test data only and
# never part of the binary). The version is pinned and the file checked.
#
#   sh internal/browsertest/testdata/axe/fetch.sh
set -eu
VERSION=4.14.1
SHA256=29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "axe-core@$VERSION" --silent >/dev/null && tar xzf "axe-core-$VERSION.tgz")
echo "$SHA256  $tmp/package/axe.min.js" | sha256sum -c -
cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$tmp/package/LICENSE-3RD-PARTY.txt" "$here/"
echo "axe-core $VERSION in $here"
