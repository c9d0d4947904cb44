#!/usr/bin/env bash
# The project's CPU queue, in its order: the CIFAR-100 study, its baselines' single-seed rows and the check of
# DIST's row (a second seed), then the 240-epoch res56 -> res20 runs. Each sweep runs from a git worktree pinned at the commit it started from,
# beside this checkout (so ../shared resolves as here): a change on main never reaches a run half-way.
# Finished runs committed here are copied into a worktree before its sweep starts, so a fresh machine
# skips them instead of running them again.
#
#   bash docs/cpu_queue.sh run      the sweeps one after the other (a sweep marked "beside" with runs left goes
#                                   on in the background while the next starts, every run then on one thread);
#                                   PYTHON names the interpreter (it needs mdistiller for the study's ReviewKD
#                                   arm); stops at the first failure
#   bash docs/cpu_queue.sh sync     finished runs' small outputs (worklog, config, runtime record, probe)
#                                   copied into this checkout, and the long runs' so far with their last
#                                   checkpoint less the teacher's weights (latest.carry: commit it, and `run`
#                                   on a fresh machine resumes them from it); the CIFAR-100 claims page and
#                                   the 240-epoch runs' comparison regenerated
#   bash docs/cpu_queue.sh status   every run of the queue: finished, or the epochs it has done
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PARENT=$(dirname "$ROOT")
PY=${PYTHON:-python3}
# worktree name, pinned commit, sweep file, the folder its runs land in, what sync copies (finished runs, or
# every run: a 240-epoch run spans sessions, and how far it got is committed at each session's end), and whether
# the next sweep waits for this one or starts beside it (the baselines: CRD's single run holds one core for about
# ten hours, its 16,385 memory rows gathered per sample, while the other three finish in about an hour).
# baselines100 (from 55839bd) and res56_res20 (from adac77b) were moved once, at an epoch's end with their
# runs stopped and synced, to c1d1e10: the same training code plus in-epoch snapshots, which change no number
# (tests/test_snapshot.py, bitwise) and keep a stopped session's epoch in progress (up to an hour of CRD)
QUEUE=(
  "study100 e972a62 docs/cifar100_study/sweep.yaml docs/cifar100_study/runs finished wait"
  "baselines100 c1d1e10 docs/cifar100_study/sweep_baselines.yaml docs/cifar100_study/runs finished beside"
  "distcheck100 28b136a docs/cifar100_study/sweep_dist_check.yaml docs/cifar100_study/runs finished beside"
  "res56_res20 c1d1e10 docs/cifar100_res56_res20/sweep.yaml docs/cifar100_res56_res20 every wait"
)
LONG_RUNS=docs/cifar100_res56_res20
# every later worktree links its ./data (EXT.DATA_CACHE's default) to the first sweep's: the decoded CIFAR-100,
# the teachers' remembered accuracies and every teacher logit an earlier run computed are read, not made again
SHARED_DATA=$PARENT/${QUEUE[0]%% *}/data
SMALL=(worklog.txt config.yaml runtime.json grad_probe.csv)

finished() { grep -q "^best_acc" "$1/worklog.txt" 2>/dev/null; }

# copy the small outputs of every finished run (with $3 = every: every run) under $1 into the same place
# under $2, unless finished there
copy_runs() {
  local from=$1 to=$2 which=${3:-finished} log run rel
  [ -d "$from" ] || return 0
  while IFS= read -r log; do
    run=$(dirname "$log")
    finished "$run" || [ "$which" = every ] || continue
    rel=${run#"$from"/}
    finished "$to/$rel" && continue
    mkdir -p "$to/$rel"
    for f in "${SMALL[@]}"; do
      if [ -f "$run/$f" ]; then cp "$run/$f" "$to/$rel/$f"; fi
    done
    echo "  $rel"
  done < <(find "$from" -name worklog.txt | sort)
}

worktree() {  # the pinned worktree of queue entry "$1 $2", created if missing, refused if moved
  local name=$1 commit=$2 wt=$PARENT/$1
  if [ ! -e "$wt" ]; then
    git -C "$ROOT" worktree add --detach "$wt" "$commit" >&2
    if [ "$wt/data" != "$SHARED_DATA" ]; then
      mkdir -p "$SHARED_DATA"
      ln -s "$SHARED_DATA" "$wt/data"
    fi
  fi
  local head
  head=$(git -C "$wt" rev-parse HEAD)
  if [ "$head" != "$(git -C "$ROOT" rev-parse "$commit^{commit}")" ]; then
    echo "error: $wt is at ${head:0:7}, not at its pinned $commit; move it back (git -C $wt checkout $commit) or change the pin in docs/cpu_queue.sh" >&2
    exit 1
  fi
  echo "$wt"
}

case "${1:-}" in
  run)
    beside=()
    for entry in "${QUEUE[@]}"; do
      read -r name commit sweep runs which mode <<< "$entry"
      wt=$(worktree "$name" "$commit")
      echo "== $name ($commit): $sweep; finished runs from $ROOT:"
      copy_runs "$ROOT/$runs" "$wt/$runs"
      # the long runs' carried checkpoints (a fresh machine has none of its own): each goes on where it stopped;
      # run from this checkout, whose package has the tool (a worktree's may predate it)
      if [ "$which" = every ]; then (cd "$ROOT" && "$PY" -m mdistiller_ext.runs.carry restore "$ROOT/$runs" "$wt/$runs"); fi
      # a sweep shares the cores out among its side-by-side runs (the study: two, one thread each); the
      # 240-epoch runs go one at a time and take both, unless a sweep beside them still has runs
      # only a sweep marked beside is planned first; its plan is read whole (grep -q on the pipe would cut it short)
      if [ "$mode" = beside ] && grep -qE '^(not run yet|partial)' <<< "$(cd "$wt" && "$PY" tools/compare.py --sweep "$sweep" --dry-run)"; then
        echo "   (runs left: it goes on beside the next sweep, every run on one thread)"
        (cd "$wt" && "$PY" tools/compare.py --sweep "$sweep") &
        beside+=("$!")
        export OMP_NUM_THREADS=1
      else
        (cd "$wt" && "$PY" tools/compare.py --sweep "$sweep")
      fi
    done
    for pid in ${beside[@]+"${beside[@]}"}; do wait "$pid"; done
    ;;
  sync)
    for entry in "${QUEUE[@]}"; do
      read -r name commit sweep runs which _ <<< "$entry"
      [ -d "$PARENT/$name" ] || continue
      echo "== $name: runs copied ($which)"
      copy_runs "$PARENT/$name/$runs" "$ROOT/$runs" "$which"
      if [ "$which" = every ]; then  # and their checkpoints without the teacher's weights (runs/carry.py)
        (cd "$ROOT" && "$PY" -m mdistiller_ext.runs.carry pack "$PARENT/$name/$runs" "$ROOT/$runs") \
          || echo "  warning: a checkpoint was not carried (above); a fresh machine would start that run again" >&2
      fi
    done
    "$PY" "$ROOT/docs/cifar100_study/claims.py" > /dev/null
    if [ -n "$(find "$ROOT/$LONG_RUNS" -mindepth 2 -name worklog.txt -print -quit)" ]; then
      (cd "$ROOT" && "$PY" tools/compare.py --runs "$LONG_RUNS" --out "$LONG_RUNS" --replace-report > /dev/null)
    fi
    ;;
  status)
    for entry in "${QUEUE[@]}"; do
      read -r name commit sweep runs _ <<< "$entry"
      echo "== $name ($commit): $sweep"
      [ -d "$PARENT/$name/$runs" ] || { echo "  not started"; continue; }
      # a sweep that halted itself (sweep.yaml's halt) says why here until someone deletes the file
      if [ -f "$PARENT/$name/$runs/HALTED.txt" ]; then sed 's/^/  HALTED: /' "$PARENT/$name/$runs/HALTED.txt"; fi
      while IFS= read -r log; do
        run=$(dirname "$log")
        if finished "$run"; then state="finished ($(grep '^best_acc' "$log" | tail -1 | tr '\t' ' '))"
        else state="$(grep -c '^epoch' "$log" || true) epochs done"; fi
        echo "  ${run#"$PARENT/$name/$runs"/}: $state"
      done < <(find "$PARENT/$name/$runs" -name worklog.txt | sort)
    done
    ;;
  *)
    echo "usage: bash docs/cpu_queue.sh run | sync | status" >&2
    exit 2
    ;;
esac
