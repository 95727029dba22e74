#!/usr/bin/env bash
# One command per part of the SmolLM2 x Natural-Instructions study (issue 12); see README.md here.
#   studies/smollm2-ni/run.sh matrix|noise|analyze|predict|sweep|replay-run|analyze-replay-run|replay|report|wikipedia [--fg] [ARGS...]
# Each part runs in the background (nohup, nice), logs to studies/smollm2-ni/logs/PART.log and is
# resumable: run the same command again after an interruption and finished work is not redone.
# Further ARGS go to the part's command (e.g. sweep.py --n-task 48,192); THREADS and SRC: studies/common/parts.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../common/parts.sh"
part="${1:?usage: run.sh matrix|noise|analyze|predict|sweep|replay-run|analyze-replay-run|replay|report|wikipedia [--fg] [ARGS...]}"
shift
parse_part_args "$@"
runs="$here/runs"
mkdir -p "$here/results"
case "$part" in
  matrix)  cmd=("$py" -m lmforget collect "$here/matrix.yaml" -o "$runs/matrix") ;;
  noise)   cmd=("$py" -m lmforget collect "$here/noise.yaml" -o "$runs/noise") ;;
  analyze) cmd=("$py" studies/common/analyze.py --runs "$rel/runs" --out "$rel/results") ;;
  analyze-replay-run) cmd=("$py" studies/common/analyze.py --runs "$rel/runs" --run replay-run --compare matrix --out "$rel/results/replay-run") ;;
  predict) cmd=("$py" studies/common/predict.py --runs "$rel/runs" --out "$rel/results/prediction") ;;
  sweep)   cmd=("$py" "$rel/sweep.py" --runs "$rel/runs" --out "$rel/runs/sweep") ;;
  replay-run) cmd=("$py" -m lmforget collect "$here/replay-run.yaml" -o "$runs/replay-run") ;;
  replay)  cmd=("$py" -m lmforget replay "$here/replay.yaml" -o "$runs/replay") ;;
  report)  cmd=("$py" "$rel/report.py" --runs "$rel/runs" --results "$rel/results") ;;
  wikipedia) cmd=("$py" -m lmforget collect "$here/wikipedia.yaml" -o "$runs/wikipedia") ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
launch_part "$part" "${cmd[@]}"
