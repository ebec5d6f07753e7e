"""Memory per process: one process, DDP and FSDP under torchrun, for a model where it matters.

    python bench/fsdp_memory.py                 # 1 process, then DDP and FSDP with 2 and 4
    python bench/fsdp_memory.py --nproc 2       # only 2 processes
    python bench/fsdp_memory.py --width 4096    # a 4x larger model (268 MB of parameters)

The model is a 4-layer MLP of width 2048 (16.8 M parameters, 67 MB in fp32), trained for two
steps with AdamW. Each process reports what it holds after training: its parameters, gradients
and optimizer state (exact: the bytes of its own tensors, a DTensor's local shard under FSDP),
and its peak resident memory (``ru_maxrss``: includes about 220 MB of torch runtime, and the
transient full-size gradients DDP all-reduces). Runs on CPU with gloo; the same script on GPUs
measures device memory in ``cuda_peak_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS = 4
MB = 1024 * 1024


def worker(out: Path, mode: str, width: int) -> None:
    import torch
    from torch import nn

    from hooktrain import Trainer, TrainingArguments, hookimpl

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(LAYERS)])

        def forward(self, x, labels):
            return {"loss": nn.functional.mse_loss(self.layers(x), labels)}

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, index: int):
            generator = torch.Generator().manual_seed(index)
            return {"x": torch.randn(width, generator=generator),
                    "labels": torch.randn(width, generator=generator)}

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rank = int(os.environ.get("RANK", "0"))
    extra = {"fsdp": "full_shard", "fsdp_config": {"transformer_layer_cls_to_wrap": ["Linear"]}} \
        if mode == "fsdp" else {}
    args = TrainingArguments(output_dir=str(out / "run"), max_steps=2,
                             per_device_train_batch_size=4, save_strategy="no",
                             report_to="none", disable_tqdm=True, **extra)
    def local_bytes(tensors) -> int:
        return sum((t.to_local() if hasattr(t, "to_local") else t).nbytes for t in tensors)

    class GradientBytes:
        """The gradients as the optimizer sees them (zero_grad frees them after the step)."""

        mb = 0.0

        @hookimpl
        def on_pre_optimizer_step(self, model) -> None:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            self.mb = max(self.mb, local_bytes(grads) / MB)

    gradients = GradientBytes()
    trainer = Trainer(MLP(), args, train_dataset=Data(), callbacks=[gradients])
    trainer.train()

    model, optimizer = trainer.model, trainer.optimizer
    report = {
        "params_mb": local_bytes(model.parameters()) / MB,
        "grads_mb": gradients.mb,
        "optimizer_mb": local_bytes(t for state in optimizer.state.values()
                                    for t in state.values() if torch.is_tensor(t) and t.ndim)
        / MB,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        report["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / MB
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(report))


def launch(out: Path, mode: str, nproc: int, width: int) -> list[dict[str, float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker_args = ["--width", str(width), "--worker", mode, str(out)]
    if nproc == 1:
        command = [sys.executable, __file__, *worker_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={nproc}", __file__, *worker_args]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)
    return [json.loads((out / f"{mode}-rank{rank}.json").read_text()) for rank in range(nproc)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "OUT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(Path(options.worker[1]), options.worker[0], options.width)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("one process", "single", 1)] + [
            (f"{mode.upper()} x{n}", mode, n) for n in options.nproc for mode in ("ddp", "fsdp")]
        for label, mode, nproc in runs:
            out = Path(tmp) / f"{mode}{nproc}"
            out.mkdir()
            reports = launch(out, mode, nproc, options.width)
            worst = max(reports, key=lambda r: r["params_mb"] + r["optimizer_mb"])
            rows.append({"run": label, **{k: round(v, 3) for k, v in worst.items()}})
    print(f"{LAYERS}-layer MLP, width {options.width}; per process (the largest rank), MB:")
    keys = [k for k in rows[0] if k != "run"]
    print(f"{'run':12s} " + " ".join(f"{k:>13s}" for k in keys))
    for row in rows:
        print(f"{row['run']:12s} " + " ".join(f"{row[k]:13.1f}" for k in keys))
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
