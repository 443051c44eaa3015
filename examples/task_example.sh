#!/bin/sh
# A small example task: prints its progress for about two seconds.
#   taskmasterd submit --cmd="$PWD/examples/task_example.sh" --priority=HIGH --wait
steps=${STEPS:-5}
echo "task ${TASKMASTER_TASK_ID:-?} (attempt ${TASKMASTER_ATTEMPT:-?}) starting on $(hostname)"
i=1
while [ "$i" -le "$steps" ]; do
  echo "step $i/$steps: $((i * 100 / steps))%"
  sleep 0.4
  i=$((i + 1))
done
echo "done" >&2
