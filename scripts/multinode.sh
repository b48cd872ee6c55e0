#!/usr/bin/env bash
# Multi-node training through Lightning's own launchers. charlm needs nothing special: each
# process runs `python -m charlm fit ...` with the same arguments, and Lightning reads its rank
# from the launcher's environment. Data is prepared once per node (a file lock guards the cache).
#
# Under SLURM (Lightning detects SLURM_* variables), e.g. 2 nodes x 4 GPUs:
#   #SBATCH --nodes=2 --ntasks-per-node=4 --gpus-per-node=4
#   srun python -m charlm fit --config cli.yaml --trainer.num_nodes 2 --trainer.devices 4
#
# With torchrun (Lightning detects TorchElastic's variables); run this on every node:
#   NNODES=2 NPROC=4 MASTER=node0.example:29500 scripts/multinode.sh --config cli.yaml
#
# On one machine without GPUs, as the tests do:
#   NNODES=1 NPROC=2 scripts/multinode.sh --config cli.yaml --trainer.accelerator cpu
set -euo pipefail
NNODES=${NNODES:-1}
NPROC=${NPROC:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
MASTER=${MASTER:-127.0.0.1:29500}
# the script's sizes come after "$@", so a --config file cannot undo them
exec torchrun --nnodes "$NNODES" --nproc_per_node "$NPROC" --rdzv_backend c10d --rdzv_endpoint "$MASTER" \
    -m charlm fit "$@" --trainer.num_nodes "$NNODES" --trainer.devices "$NPROC" --trainer.strategy ddp
