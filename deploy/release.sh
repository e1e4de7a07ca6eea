#!/usr/bin/env bash
# Builds the release binaries: recallrelay and fakemta for linux/amd64 and
# linux/arm64, static (CGO_ENABLED=0), without the build machine's paths
# (-trimpath), stamped with the version control revision (-buildvcs=true
# when the repository has a .git; recallrelay version prints it), into
# OUT_DIR (default dist/ at the repository root) with SHA256SUMS beside
# them.
#
#   bash deploy/release.sh
#   OUT_DIR=/tmp/recallrelay-dist bash deploy/release.sh
#   PLATFORMS="linux/amd64" bash deploy/release.sh
#
# The binaries are named NAME_OS_ARCH (recallrelay_linux_amd64). Verify a
# download with: cd dist && sha256sum -c SHA256SUMS
#
# Versions: a release is a semver tag vMAJOR.MINOR.PATCH (v0.1.0,
# v1.2.0-rc.1) on the one Go module github.com/recallrelay/recallrelay,
# made on the commit to release before this script runs:
#
#   git tag -a v0.1.0 -m "recallrelay v0.1.0" && git push origin v0.1.0
#
# The same tag is what Go consumers fetch. relaytest (and every other
# package) belongs to that module and has no module or tag of its own, so
#   go get github.com/recallrelay/recallrelay/relaytest@v0.1.0
# works without a replace directive. From v2 on, the module path must end
# in /v2 (Go's semantic import versioning). The go directive of go.mod is
# the oldest Go consumers may use (relaytest's TestGoDirectiveIsMinimal).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT_DIR:-dist}"
platforms="${PLATFORMS:-linux/amd64 linux/arm64}"
commands=(recallrelay fakemta)

# GOFLAGS may carry -buildvcs=false (this workplace sets it); the flag on
# the command line below wins over it. Without .git (a source archive) the
# binaries say "(devel)" and "revision unknown".
buildvcs=false
if [[ -e .git ]]; then
	buildvcs=true
fi

mkdir -p "$out_dir"
rm -f "$out_dir/SHA256SUMS"
files=()
for platform in $platforms; do
	goos="${platform%/*}"
	goarch="${platform#*/}"
	for cmd in "${commands[@]}"; do
		bin="${cmd}_${goos}_${goarch}"
		echo "release: $bin"
		CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" \
			go build -trimpath -buildvcs="$buildvcs" -ldflags="-s -w" \
			-o "$out_dir/$bin" "./cmd/$cmd"
		files+=("$bin")
	done
done

(cd "$out_dir" && sha256sum -- "${files[@]}" >SHA256SUMS)
echo
echo "release: $out_dir/SHA256SUMS"
cat "$out_dir/SHA256SUMS"

# The version the binaries report, from one that runs here.
native="recallrelay_$(go env GOOS)_$(go env GOARCH)"
if [[ -x "$out_dir/$native" ]]; then
	echo
	"$out_dir/$native" version
fi
