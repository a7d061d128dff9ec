#!/usr/bin/env bash
# herd-cls training on a SLURM cluster: one torchrun per node, one process per GPU.
#   sbatch --nodes 2 --gres gpu:4 scripts/slurm_train.sh --backbone resnet50 --dataset imagefolder --data-root DIR
# --batch-size is per process: the global batch is nodes x GPUs per node x --batch-size.
#SBATCH --job-name=herd-cls
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
set -euo pipefail
gpus_per_node=${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node "$gpus_per_node" \
    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head_node:29500" \
    -m herd_cls train --name "slurm-$SLURM_JOB_ID" "$@"
