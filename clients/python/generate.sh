#!/usr/bin/env bash
# Regenerates the gRPC stubs in inferd/v1 from proto/ with the project's
# grpcio-tools (scripts/setup.sh pins its version). The test suite fails
# when the committed stubs differ from what this produces.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
.venv/bin/python -m grpc_tools.protoc -I proto --python_out=clients/python --grpc_python_out=clients/python \
  --pyi_out=clients/python inferd/v1/inference.proto inferd/v1/models.proto
