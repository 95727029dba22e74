#!/usr/bin/env bash
# One command per part of the SmolLM2 x Natural-Instructions study (issue 12); see README.md here.
#   studies/smollm2-ni/run.sh matrix|noise|analyze|predict|sweep|replay-run|analyze-replay-run|replay|report|wikipedia [--fg] [ARGS...]
# Each part runs in the background (nohup, nice), logs to studies/smollm2-ni/logs/PART.log and is
# resumable: run the same command again after an interruption and finished work is not redone.
# THREADS (default 1): torch threads. On a busy 2-core machine one thread is several times faster than
# two (OpenMP threads spin against other processes); on an idle machine set THREADS=2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
part="${1:?usage: run.sh matrix|noise|analyze|predict|sweep|replay-run|analyze-replay-run|replay|report|wikipedia [--fg] [ARGS...]}"
shift
fg=0
extra=()  # further arguments go to the part's command (e.g. sweep.py --n-task 48,192)
for a in "$@"; do
  if [[ "$a" == "--fg" ]]; then fg=1; else extra+=("$a"); fi
done
py="${PYTHON:-python}"
runs="$here/runs"
results="$here/results"
rel="${here#"$root"/}"  # the analysis parts run from the root with relative paths: no machine paths in results/
mkdir -p "$here/logs" "$runs" "$results"
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
cmd+=("${extra[@]}")
export OMP_NUM_THREADS="${THREADS:-1}" PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
if [[ "$fg" == 1 ]]; then
  exec nice -n 5 "${cmd[@]}"
fi
nohup nice -n 5 "${cmd[@]}" >> "$here/logs/$part.log" 2>&1 &
echo "started $part (pid $!), log: $here/logs/$part.log"
