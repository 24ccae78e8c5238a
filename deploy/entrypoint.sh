#!/bin/sh
# The container's entrypoint (installed as bin/inferd-entrypoint beside
# inferd): starts inferd with the model the environment names, then any
# arguments given.
#   INFERD_MODEL_TASK  the model's pipeline() task, e.g. text-classification
#                      (unset: no start-up model; load them with LoadModel)
#   INFERD_MODEL_NAME  the name clients use for it (default: model)
#   INFERD_MODEL_DIR   the mounted model directory (default: /mnt/models, where
#                      KServe's storage initializer puts STORAGE_URI)
#   STORAGE_URI        used when INFERD_MODEL_DIR holds no model: hf://ORG/NAME
#                      (downloaded into the Hugging Face cache, HF_HOME), a
#                      directory, or file://DIRECTORY
# Everything else is inferd's own INFERD_* variables (inferd --help).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${INFERD_MODEL_TASK:-}" ]; then
  dir="${INFERD_MODEL_DIR:-/mnt/models}"
  if [ -f "$dir/config.json" ]; then
    source="$dir"
  else
    case "${STORAGE_URI:-}" in
      hf://*) source="${STORAGE_URI#hf://}" ;;
      file://*) source="${STORAGE_URI#file://}" ;;
      /*) source="$STORAGE_URI" ;;
      "")
        echo "inferd-entrypoint: INFERD_MODEL_TASK is set but $dir holds no model and STORAGE_URI is unset" >&2
        exit 2
        ;;
      *)
        echo "inferd-entrypoint: STORAGE_URI $STORAGE_URI: inferd reads hf://, file:// and directories; other schemes need KServe's storage initializer (it fills $dir)" >&2
        exit 2
        ;;
    esac
  fi
  set -- --model "${INFERD_MODEL_NAME:-model}:${INFERD_MODEL_TASK}=${source}" "$@"
fi
exec "$here/inferd" "$@"
