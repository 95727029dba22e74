# Shared by the studies' run.sh: each part runs one command, in the background (nohup, nice) with its log in
# STUDY/logs/PART.log, or in the foreground with --fg. Source this after setting `here` (the study's folder);
# then `parse_part_args "$@"` and `launch_part PART CMD...`.
# Environment: THREADS (default 1) torch threads per process: on a busy 2-core machine one thread is several
# times faster than two (OpenMP threads spin against other processes). SRC (default: this checkout's src/):
# the lmforget source a part imports, e.g. a `git worktree` snapshot, so edits here never reach a long run's
# worker processes mid-run.
root="$(cd "$here/../.." && pwd)"
rel="${here#"$root"/}"  # the analysis parts run from the root with relative paths: no machine paths in results/
py="${PYTHON:-python}"
mkdir -p "$here/logs" "$here/runs"

parse_part_args() {  # sets fg (1 with --fg) and extra (the other arguments, passed on to the part's command)
  fg=0
  extra=()
  for a in "$@"; do
    if [[ "$a" == "--fg" ]]; then fg=1; else extra+=("$a"); fi
  done
}

launch_part() {  # PART CMD...: run CMD plus the extra arguments from the repository root
  local part="$1"
  shift
  export OMP_NUM_THREADS="${THREADS:-1}" PYTHONPATH="${SRC:-$root/src}${PYTHONPATH:+:$PYTHONPATH}"
  cd "$root"
  if [[ "$fg" == 1 ]]; then
    exec nice -n 5 "$@" "${extra[@]}"
  fi
  nohup nice -n 5 "$@" "${extra[@]}" >> "$here/logs/$part.log" 2>&1 &
  echo "started $part (pid $!), log: $here/logs/$part.log"
}
