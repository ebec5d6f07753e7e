"""The Hugging Face Trainer and Lightning on the same work, when they are installed.

``pip install -e '.[bench]'`` installs both. Each runs the workload with its defaults for a user
who wants a progress bar and logging every 50 steps, with fused AdamW, clipping at 1.0 and a
linear schedule, on the CPU; seconds per optimizer step come back, as from ``workloads``.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import torch
from workloads import MLP, Workload, quiet_output


def available() -> dict[str, Callable[[Workload, Any, str], float]]:
    """The frameworks that are importable here, by name."""
    found: dict[str, Callable[[Workload, Any, str], float]] = {}
    if importlib.util.find_spec("transformers") and importlib.util.find_spec("accelerate"):
        found["HF Trainer"] = hf_trainer
    if importlib.util.find_spec("lightning"):
        found["Lightning"] = lightning_trainer
    return found


def hf_trainer(work: Workload, dataset: Any, output_dir: str) -> float:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=output_dir, max_steps=work.steps, per_device_train_batch_size=work.batch_size,
        learning_rate=1e-3, logging_steps=50, save_strategy="no", report_to="none",
        optim="adamw_torch_fused", use_cpu=True, dataloader_pin_memory=False,
        remove_unused_columns=False, disable_tqdm=False,
    )
    trainer = Trainer(model=MLP(work.sizes), args=args, train_dataset=dataset)
    with quiet_output():
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
    return elapsed / work.steps


def lightning_trainer(work: Workload, dataset: Any, output_dir: str) -> float:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = MLP(work.sizes)

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = self.model(**batch)["loss"]
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3, fused=True)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: max(0.0, (work.steps - step) / work.steps))
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=work.batch_size, shuffle=True)
    trainer = L.Trainer(
        max_steps=work.steps, accelerator="cpu", devices=1, gradient_clip_val=1.0,
        log_every_n_steps=50, logger=CSVLogger(output_dir), enable_checkpointing=False,
        enable_model_summary=False,
    )
    with quiet_output():
        start = time.perf_counter()
        trainer.fit(Module(), loader)
        elapsed = time.perf_counter() - start
    return elapsed / work.steps
